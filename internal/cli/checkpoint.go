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
	var rel, sh string
	var count int
	err = withWriter(e, dir, *key, func(b *store.Backpack) (err error) {
		if rel, err = b.Checkpoint(); err != nil {
			return err
		}
		count = b.Snapshot().EventCount
		sh, err = b.StateHash()
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"checkpoint": rel, "state_hash": sh, "event_count": count})
	}
	fmt.Fprintf(e.stdout, "wrote %s (state %s)\n", rel, shortID(sh))
	return nil
}
