package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func runJoin(e *env, args []string) error {
	fs := newFlags(e, "join", "SRC NEWDIR [flags]", `Make NEWDIR a new device of the backpack in SRC (a backpack directory): a
copy of it with a new device key of its own (kept outside the backpack).
It prints the key id and a fingerprint. On a device that is already
trusted, compare the fingerprint with the person who joined, then run
`+"`backpack trust DIR NEWDIR/identity/keys.json --key-id KEYID`"+`; until then the new
device's events wait in the other devices' quarantine.`)
	actor := fs.String("actor", "", "actor label the new device writes as")
	key := fs.String("key", "", "where to write the new device's key file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	src, newDir, err := twoPositionals(fs, args, "SRC and NEWDIR")
	if err != nil {
		return err
	}
	res, err := store.Join(e.ctx, src, newDir, store.JoinOptions{Actor: *actor, KeyFile: *key})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "joined backpack %s as a new device in %s\n  actor        %s\n  key id       %s\n  fingerprint  %s   (compare it with the device that trusts you)\n  key file     %s\n",
		res.UID, res.Dir, res.Actor, res.KeyID, res.Fingerprint, res.KeyFile)
	return nil
}

func runTrust(e *env, args []string) error {
	fs := newFlags(e, "trust", "DIR KEYFILE [--key-id KEYID] [flags]", `Trust another device's key, on a device whose own key is trusted: appends a
signed KEY_PROMOTION event naming the key, so every replica that receives
it adds the key to identity/keys.json, and applies the quarantined events
signed by it. KEYFILE is the other device's identity/keys.json (choose the
key with --key-id when it lists several that DIR does not trust yet) or a
file {"key_id": ..., "public_key_b64": ...}. Compare the fingerprint
printed by `+"`backpack join`"+` first.`)
	keyID := fs.String("key-id", "", "which key of KEYFILE to trust")
	role := fs.String("role", "attestation", "role recorded for the key")
	devKey := fs.String("key", "", "this device's key file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir, keyFile, err := twoPositionals(fs, args, "DIR and KEYFILE")
	if err != nil {
		return err
	}
	var res *store.IngestResult
	var ev *bplog.Event
	var pub ed25519.PublicKey
	err = withWriter(e, dir, *devKey, func(b *store.Backpack) error {
		var err error
		if pub, err = pickKey(keyFile, *keyID, b.Registry()); err != nil {
			return err
		}
		ev, res, err = b.TrustKey(e.ctx, pub, []string{*role})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"trusted": bplog.KeyID(pub), "event_id": ev.ID, "retry": res})
	}
	fmt.Fprintf(e.stdout, "trusted %s (fingerprint %s) by event %s\n", bplog.KeyID(pub), store.Fingerprint(bplog.KeyID(pub)), ev.ID)
	return printIngest(e, res, false)
}

// pickKey reads the public key to trust from a keys.json or a single-key
// file.
func pickKey(file, keyID string, reg *bplog.Registry) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil && strings.HasPrefix(file, bplog.KeyIDPrefix) {
		return nil, usagef("%s: a key id alone does not carry the public key; give the new device's identity/keys.json (or its key entry) with --key-id %s", file, file)
	}
	if err != nil {
		return nil, err
	}
	v, err := canon.Limits{MaxSize: 4 << 20}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	entries := v.Field("keys").Elems()
	if len(entries) == 0 && v.Has("public_key_b64") {
		entries = []canon.Value{v}
	}
	var cands []canon.Value
	for _, k := range entries {
		id := k.Field("key_id").Str()
		if keyID != "" && id != keyID {
			continue
		}
		if _, err := reg.Resolve(id); err == nil && keyID == "" {
			continue // already trusted
		}
		cands = append(cands, k)
	}
	if len(cands) != 1 {
		return nil, usagef("%s: %d candidate keys; name one with --key-id", file, len(cands))
	}
	pub, err := base64.StdEncoding.DecodeString(cands[0].Field("public_key_b64").Str())
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: public_key_b64 is not a 32-byte Ed25519 key", file)
	}
	if id := cands[0].Field("key_id").Str(); id != "" && id != bplog.KeyID(pub) {
		return nil, fmt.Errorf("%s: key_id %s does not match its public key (%s)", file, id, bplog.KeyID(pub))
	}
	return pub, nil
}
