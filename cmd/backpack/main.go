// Command backpack keeps a signed, append-only Provara v1.0 record in the
// field. See README.md, or run `backpack help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/backpack-field/backpack/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
