package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/store"
)

func runInit(e *env, args []string) error {
	fs := newFlags(e, "init", "DIR [flags]", `Create a new backpack in DIR (missing or empty): identity, policies, the
GENESIS event and a first observation, manifest, Merkle root and a signed
manifest.sig, exactly as the Provara reference's bootstrap lays them out.
The device's private key is written OUTSIDE the backpack, by default to
$XDG_CONFIG_HOME/backpack/keys/<uid>.json (mode 0600); later commands find it
there, or take --key FILE / $BACKPACK_KEY.`)
	actor := fs.String("actor", "", "actor label this device writes as (default backpack_<key id>)")
	key := fs.String("key", "", "where to write the private key file (must be outside DIR)")
	uid := fs.String("uid", "", "backpack uid (default: a random UUID)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir, err := onePositional(fs, args, "directory")
	if err != nil {
		return err
	}
	res, err := store.Init(e.ctx, dir, store.InitOptions{UID: *uid, Actor: *actor, KeyFile: *key})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "created backpack %s\n  uid         %s\n  actor       %s\n  device key  %s\n  key file    %s (keep it safe; it is not inside the backpack)\n  events      %d (GENESIS, first observation)\n  merkle root %s\n",
		res.Dir, res.UID, res.Actor, res.KeyID, res.KeyFile, len(res.Events), res.Root)
	return nil
}
