package cli

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func runJoin(e *env, args []string) error {
	fs := newFlags(e, "join", "SRC NEWDIR [flags]", `Make NEWDIR a new device of the backpack in SRC: a copy of it with a new
device key of its own (kept outside the backpack). SRC is a backpack
directory, a full-history bundle (`+"`backpack export DIR -o FILE`"+` without
--since), which carries the backpack's genesis, keys.json and policies,
or a peer folder the devices' agents sync through (it joins from a
full-history bundle there and imports every other bundle; with --wait, if
there is none, it announces the new device in the folder and waits for
an agent to export one). Events are checked against the carried
keys.json as any import, and a bundle's sender must be one of those
keys. It prints the key id and a fingerprint.
On a device that is already trusted, compare the fingerprint with the
person who joined, then run `+"`backpack trust DIR KEYID`"+` there (once it has
imported a bundle from the new device) or `+"`backpack trust DIR NEWDIR/identity/keys.json --key-id KEYID`"+`;
until then the new device's events wait in the other devices' quarantine.`)
	actor := fs.String("actor", "", "actor label the new device writes as")
	key := fs.String("key", "", "where to write the new device's key file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	uid := fs.String("uid", "", "with a peer folder holding several backpacks: which one")
	wait := fs.Duration("wait", 0, "with a peer folder holding no full-history bundle: announce this device there and wait this long for the other devices' agents to export one")
	src, newDir, err := twoPositionals(fs, args, "SRC and NEWDIR")
	if err != nil {
		return err
	}
	opts := store.JoinOptions{Actor: *actor, KeyFile: *key}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	var res *store.JoinResult
	fromFolder := false
	if st.IsDir() {
		if _, err := store.ReadGenesis(src); errors.Is(err, store.ErrNotBackpack) {
			// A peer folder the devices' agents sync through.
			fromFolder = true
			res, err = agent.JoinFolder(e.ctx, src, newDir, agent.JoinFolderOptions{
				UID: *uid, Actor: *actor, KeyFile: *key, Wait: *wait, Logger: e.logger()})
			if err != nil {
				return err
			}
		} else {
			res, err = store.Join(e.ctx, src, newDir, opts)
		}
	} else {
		res, err = joinFromBundle(e, src, newDir, opts)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "joined backpack %s as a new device in %s\n", res.UID, res.Dir)
	if !st.IsDir() || fromFolder {
		fmt.Fprintf(e.stdout, "  events       %d imported from %s", res.Imported, src)
		if res.Held > 0 {
			fmt.Fprintf(e.stdout, ", %d held back (see backpack quarantine)", res.Held)
		}
		fmt.Fprintln(e.stdout)
	}
	fmt.Fprintf(e.stdout, "  actor        %s\n  key id       %s\n  fingerprint  %s   (compare it with the device that trusts you)\n  key file     %s\n",
		res.Actor, res.KeyID, res.Fingerprint, res.KeyFile)
	return nil
}

// joinFromBundle joins from a full-history backpack bundle.
func joinFromBundle(e *env, file, newDir string, opts store.JoinOptions) (*store.JoinResult, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(8)
	switch bundles.Sniff(head) {
	case bundles.KindBackpack:
	case bundles.KindReference:
		return nil, fmt.Errorf("%s: a provara_delta_v1 bundle carries no backpack files; join from a backpack directory or a full backpack bundle", file)
	default:
		return nil, fmt.Errorf("%s: neither a backpack directory nor a backpack bundle", file)
	}
	bd, err := bundles.Decode(br, bundles.Limits{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	res, err := store.JoinBundle(e.ctx, bd, filepath.Base(file)+" from "+bd.Header.SenderKeyID+" (join)", newDir, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return res, nil
}

func runTrust(e *env, args []string) error {
	fs := newFlags(e, "trust", "DIR KEYID|KEYFILE [--key-id KEYID] [flags]", `Trust another device's key, on a device whose own key is trusted: appends a
signed KEY_PROMOTION event naming the key, so every replica that receives
it adds the key to identity/keys.json, and applies the quarantined events
signed by it.
KEYID (bp1_...) is a key this device has seen in an imported bundle (its
sender, or a key its events wait for; `+"`backpack quarantine DIR`"+` lists them):
its fingerprint, where it was seen and how many events wait are printed
before it is trusted. Compare the fingerprint with the one `+"`backpack join`"+`
printed on the other device first.
KEYFILE is the other device's identity/keys.json (choose the key with
--key-id when it lists several that DIR does not trust yet) or a file
{"key_id": ..., "public_key_b64": ...}.`)
	keyID := fs.String("key-id", "", "which key of KEYFILE to trust")
	role := fs.String("role", "attestation", "role recorded for the key")
	devKey := fs.String("key", "", "this device's key file")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir, keyArg, err := twoPositionals(fs, args, "DIR and KEYID or KEYFILE")
	if err != nil {
		return err
	}
	var res *store.IngestResult
	var ev *bplog.Event
	var pub ed25519.PublicKey
	var seen *store.SeenKey
	err = withWriter(e, dir, *devKey, func(b *store.Backpack) error {
		var err error
		if _, statErr := os.Stat(keyArg); statErr != nil && strings.HasPrefix(keyArg, bplog.KeyIDPrefix) {
			if seen, err = seenKey(b, dir, keyArg); err != nil {
				return err
			}
			if pub, err = seen.Public(); err != nil {
				return err
			}
			if !*asJSON {
				fmt.Fprintf(e.stdout, "key %s\n  fingerprint  %s\n  seen in      %s\n  seen         %s to %s\n  waiting      %d events\n",
					seen.KeyID, seen.Fingerprint, strings.Join(seen.Sources, ", "), seen.FirstSeen, seen.LastSeen, seen.Waiting)
			}
		} else if pub, err = pickKey(keyArg, *keyID, b.Registry()); err != nil {
			return err
		}
		ev, res, err = b.TrustKey(e.ctx, pub, []string{*role})
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[string]any{"trusted": bplog.KeyID(pub), "fingerprint": store.Fingerprint(bplog.KeyID(pub)), "event_id": ev.ID, "retry": res}
		if seen != nil {
			out["seen"] = seen
		}
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "trusted %s (fingerprint %s) by event %s\n", bplog.KeyID(pub), store.Fingerprint(bplog.KeyID(pub)), ev.ID)
	return printIngest(e, res, false)
}

// seenKey resolves a key id from the keys this device has seen in bundles.
func seenKey(b *store.Backpack, dir, id string) (*store.SeenKey, error) {
	if !store.IsKeyID(id) {
		return nil, usagef("%s is neither a file nor a key id (bp1_ and 16 hex digits)", id)
	}
	if _, err := b.Registry().Resolve(id); err == nil {
		return nil, fmt.Errorf("key %s is already trusted", id)
	}
	k, err := b.SeenKey(id)
	if errors.Is(err, store.ErrKeyNotSeen) {
		return nil, fmt.Errorf("key %s has not been seen in any bundle; ask its holder for their identity/keys.json and run `backpack trust %s FILE`", id, dir)
	}
	return k, err
}

// pickKey reads the public key to trust from a keys.json or a single-key
// file.
func pickKey(file, keyID string, reg *bplog.Registry) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(file)
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
