package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/store"
)

func runManifest(e *env, args []string) error {
	fs := newFlags(e, "manifest", "DIR [flags]", `Rebuild manifest.json and merkle_root.txt from the files on disk and
re-sign manifest.sig with the device key (the reference leaves it stale).
Writes the state cache too when it is behind.`)
	key := fs.String("key", "", "device key file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	var res *store.ManifestResult
	err = withWriter(e, dir, *key, func(b *store.Backpack) (err error) {
		res, err = b.RebuildManifest()
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, res)
	}
	signed := "signed by " + res.SignedBy
	if res.SignedBy == "" {
		signed = "NOT signed (no device key): manifest.sig is stale"
	}
	fmt.Fprintf(e.stdout, "manifest: %d files, merkle root %s, %s\n", res.Files, res.Root, signed)
	return nil
}
