// Command backpack keeps a signed, append-only Provara v1.0 record in the
// field. See README.md, or run `backpack help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/backpack-field/backpack/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// BACKPACK_CPUPROFILE=FILE writes a CPU profile, for performance work.
	if p := os.Getenv("BACKPACK_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	// A one-shot command (an import, a merge) holds most of what it
	// allocates until it exits: collecting at twice the live heap, not
	// at once more, spares much of the collector's work for about the
	// same peak memory (docs/BENCHMARKS.md, "Sync"). The commands that
	// keep running keep Go's default, as does any GOGC setting.
	if len(os.Args) > 1 && os.Getenv("GOGC") == "" {
		switch os.Args[1] {
		case "agent", "mount", "tui":
		default:
			debug.SetGCPercent(200)
		}
	}
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	pprof.StopCPUProfile()
	os.Exit(code)
}
