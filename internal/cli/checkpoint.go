package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/store"
)

func runCheckpoint(e *env, args []string) error {
	fs := newFlags(e, "checkpoint", "DIR [flags]", `Write a signed checkpoint of the reducer state to
checkpoints/<event count>.chk in the reference's format, with backpack's
lossless resume data, and list it in the manifest.`)
	key := fs.String("key", "", "device key file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	b, err := store.Open(e.ctx, dir, store.Options{Logger: e.logger(), KeyFile: *key})
	if err != nil {
		return err
	}
	rel, err := b.Checkpoint()
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	sh, err := b.StateHash()
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"checkpoint": rel, "state_hash": sh, "event_count": b.Snapshot().EventCount})
	}
	fmt.Fprintf(e.stdout, "wrote %s (state %s)\n", rel, shortID(sh))
	return nil
}
