package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/store"
)

func runFrontier(e *env, args []string) error {
	fs := newFlags(e, "frontier", "DIR", `Print what DIR holds as a frontier (state vector): per actor, the newest
event and the number of its events, as canonical JSON. Give it to another
device's `+"`backpack export --since`"+` to get exactly what this one lacks.`)
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	b, err := store.Open(e.ctx, dir, store.Options{ReadOnly: true, Logger: e.logger()})
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintln(e.stdout, string(b.Frontier().Encode()))
	return nil
}
