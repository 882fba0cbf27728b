package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/backpack-field/backpack/internal/store"
)

func runFence(e *env, args []string) error {
	fs := newFlags(e, "fence", "create DIR | check DIR TOKEN_FILE|-", `Fencing tokens, as the reference builds them (SPEC.md §8.5): "create"
prints a token signed by this device naming the log's last event; "check"
verifies one (hash, signature by a trusted key, named event present) and,
unlike the reference, calls it stale (exit 1) once the log has advanced
past that event.`)
	key := fs.String("key", "", "device key file (create)")
	asJSON := fs.Bool("json", false, "check: print the result as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		fs.usage(false)
		return usagef("need create DIR or check DIR TOKEN")
	}
	switch pos[0] {
	case "create":
		b, err := store.Open(e.ctx, pos[1], store.Options{ReadOnly: true, KeyFile: *key, Logger: e.logger()})
		if err != nil {
			return err
		}
		defer b.Close()
		tok, err := b.FenceToken()
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(tok))
		return nil
	case "check":
		if len(pos) != 3 {
			return usagef("check needs DIR and a token file (or - for stdin)")
		}
		var tok []byte
		if pos[2] == "-" {
			tok, err = io.ReadAll(io.LimitReader(e.stdin, 64<<10))
		} else {
			tok, err = os.ReadFile(pos[2])
		}
		if err != nil {
			return err
		}
		b, err := store.Open(e.ctx, pos[1], store.Options{ReadOnly: true, Logger: e.logger()})
		if err != nil {
			return err
		}
		defer b.Close()
		info, err := b.CheckFenceToken(tok)
		if *asJSON && info != nil {
			res := map[string]any{"token": info, "valid": err == nil || errors.Is(err, store.ErrStaleToken)}
			if err != nil {
				res["error"] = err.Error()
			}
			if werr := writeJSON(e.stdout, res); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
			if !*asJSON {
				fmt.Fprintf(e.stdout, "valid and fresh: signed by %s at %s, the log still ends at %s\n", info.KeyID, info.Timestamp, info.LatestEventID)
			}
			return nil
		case errors.Is(err, store.ErrStaleToken), errors.Is(err, store.ErrBadToken):
			if !*asJSON {
				fmt.Fprintln(e.stdout, err)
			}
			return errFailed
		}
		return err
	}
	return usagef("unknown fence action %q (create, check)", pos[0])
}
