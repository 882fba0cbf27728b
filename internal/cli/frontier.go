package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/store"
)

func runFrontier(e *env, args []string) error {
	fs := newFlags(e, "frontier", "DIR", `Print what DIR holds as a frontier (state vector): per actor, the newest
event and the number of its events, and the ids of a few earlier events
of each chain (at counts n-1, n-2, n-4, ...), as canonical JSON. Give it
to another device's `+"`backpack export --since`"+` to get exactly what this
one lacks: the ancestors let a device that is behind on an actor still
send only what follows the point where the chains meet.`)
	headsOnly := fs.Bool("heads-only", false, "leave out the ancestors")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	b, err := store.Open(e.ctx, dir, store.Options{ReadOnly: true, Logger: e.logger()})
	if err != nil {
		return err
	}
	defer b.Close()
	f := b.Frontier()
	if !*headsOnly {
		if f, err = b.FrontierWithAncestors(e.ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(e.stdout, string(f.Encode()))
	return nil
}
