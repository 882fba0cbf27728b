package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	"github.com/backpack-field/backpack/reducer"
)

func runState(e *env, args []string) error {
	fs := newFlags(e, "state", "DIR [flags]", `Print the reducer state (SovereignReducerV0, byte-compatible with the
Provara reference): the canonical, local, contested and archived beliefs
and the metadata with state_hash. Read-only; uses the state cache when it
matches the log.`)
	hashOnly := fs.Bool("hash", false, "print only the state hash")
	canonical := fs.Bool("canonical", false, "print the canonical JSON (as state/current_state.json holds it) instead of indented JSON")
	ns := fs.String("namespace", "", "print only this namespace (canonical, local, contested, archived, metadata)")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	b, err := store.Open(e.ctx, dir, store.Options{Logger: e.logger(), ReadOnly: true})
	if err != nil {
		return err
	}
	defer b.Close()
	if *hashOnly {
		sh, err := b.StateHash()
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, sh)
		return nil
	}
	var out []byte
	err = b.WithState(func(s *reducer.State) error {
		js, err := s.ExportJSON()
		if err != nil {
			return err
		}
		v, err := canon.Parse(js)
		if err != nil {
			return err
		}
		if *ns != "" {
			f, ok := v.Get(*ns)
			if !ok {
				return usagef("no namespace %q (canonical, local, contested, archived, metadata)", *ns)
			}
			v = f
		}
		if *canonical {
			out, err = canon.Encode(v)
		} else {
			out, err = canon.AppendIndent(nil, v)
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, string(out))
	return nil
}
