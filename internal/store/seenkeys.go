package store

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	bplog "github.com/backpack-field/backpack/log"
)

// Seen keys. A bundle from a device this one does not trust yet (a new
// device, before `backpack trust`) may carry the public key of its sender
// (sender_public_key_b64) or, for a provara_delta_v1 bundle, of the keys
// that signed its events. The key is not trusted because a bundle carries
// it; but remembering it lets a person trust it later by its id, after
// comparing the fingerprint, without fetching the other device's
// keys.json. Seen keys are device-local state, one file per key in
// <device dir>/seen-keys/<key id>.json, never in identity/keys.json:
//
//	{"first_seen_utc", "key_id", "last_seen_utc", "public_key_b64",
//	 "sources": [where it was seen, oldest first, at most 8],
//	 "waiting_events": quarantined events signed by it, when last seen}
//
// canonical JSON + LF, mode 0600.

// seenKeysDir is the directory of seen keys in the device directory.
const seenKeysDir = "seen-keys"

// maxSeenSources bounds the sources a seen key remembers.
const maxSeenSources = 8

// ErrKeyNotSeen: no bundle this device imported carried the key.
var ErrKeyNotSeen = errors.New("store: key has not been seen in any bundle")

// SeenKey is a public key this device met in a bundle and does not trust.
type SeenKey struct {
	KeyID       string   `json:"key_id"`
	PublicKey   string   `json:"public_key_b64"`
	Fingerprint string   `json:"fingerprint"`
	Sources     []string `json:"sources"`
	FirstSeen   string   `json:"first_seen_utc"`
	LastSeen    string   `json:"last_seen_utc"`
	// Waiting is how many quarantined events the key signed: counted
	// now by SeenKey and SeenKeys, as of LastSeen in NoteSeenKeys.
	Waiting int `json:"waiting_events"`
}

// Public returns the key, checked against its id.
func (k *SeenKey) Public() (ed25519.PublicKey, error) {
	pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize || bplog.KeyID(pub) != k.KeyID {
		return nil, fmt.Errorf("store: seen key %s: public_key_b64 is not the key of that id", k.KeyID)
	}
	return pub, nil
}

// IsKeyID reports whether s has the form of a key id: "bp1_" and 16
// lowercase hex digits.
func IsKeyID(s string) bool {
	h, ok := strings.CutPrefix(s, bplog.KeyIDPrefix)
	if !ok || len(h) != 16 {
		return false
	}
	for _, c := range []byte(h) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// SeenOffer is a public key a bundle carried.
type SeenOffer struct {
	Public ed25519.PublicKey
	// Sender is true when the key signed the bundle's header (verified
	// with it): the key is then recorded even if none of its events wait.
	// Other offers are recorded only for keys whose events wait in the
	// quarantine.
	Sender bool
}

// NoteSeenKeys records the offered keys that the backpack does not trust
// (neither active nor revoked in keys.json) as seen at source, and returns
// what it recorded. Call it after importing the bundle's events, so that
// the count of waiting events includes them.
func (b *Backpack) NoteSeenKeys(offers []SeenOffer, source string) ([]SeenKey, error) {
	waiting, err := b.UntrustedWaiting()
	if err != nil {
		return nil, err
	}
	dir, err := b.seenDir()
	if err != nil {
		return nil, err
	}
	reg := b.Registry()
	now := pytime.FormatUTC(b.opts.Now())
	var out []SeenKey
	done := map[string]bool{}
	for _, o := range offers {
		if len(o.Public) != ed25519.PublicKeySize {
			continue
		}
		id := bplog.KeyID(o.Public)
		if done[id] {
			continue
		}
		if _, known := reg.Key(id); known || (!o.Sender && waiting[id] == 0) {
			continue
		}
		done[id] = true
		k, err := readSeenKey(dir, id)
		switch {
		case errors.Is(err, ErrKeyNotSeen):
			k = &SeenKey{KeyID: id, PublicKey: base64.StdEncoding.EncodeToString(o.Public), FirstSeen: now}
		case err != nil:
			// A damaged record is replaced by a new one.
			b.log.Warn("seen key record unusable; writing it again", "key", id, "err", err)
			k = &SeenKey{KeyID: id, PublicKey: base64.StdEncoding.EncodeToString(o.Public), FirstSeen: now}
		}
		k.LastSeen, k.Waiting, k.Fingerprint = now, waiting[id], Fingerprint(id)
		k.Sources = addSource(k.Sources, source)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return out, err
		}
		if err := writeFileAtomic(filepath.Join(dir, id+".json"), append(canon.MustEncode(k.value()), '\n'), 0o600); err != nil {
			return out, err
		}
		out = append(out, *k)
	}
	return out, nil
}

// addSource adds src to the end of srcs (moving it there if present),
// keeping the newest maxSeenSources.
func addSource(srcs []string, src string) []string {
	out := make([]string, 0, len(srcs)+1)
	for _, s := range srcs {
		if s != src {
			out = append(out, s)
		}
	}
	out = append(out, src)
	if len(out) > maxSeenSources {
		out = out[len(out)-maxSeenSources:]
	}
	return out
}

// SeenKey returns what this device recorded about the key id, with the
// number of quarantined events that wait for it now; ErrKeyNotSeen when it
// never met the key.
func (b *Backpack) SeenKey(id string) (*SeenKey, error) {
	if !IsKeyID(id) {
		return nil, fmt.Errorf("store: %q is not a key id (bp1_ and 16 hex digits)", id)
	}
	dir, err := b.seenDir()
	if err != nil {
		return nil, err
	}
	k, err := readSeenKey(dir, id)
	if err != nil {
		return nil, err
	}
	waiting, err := b.UntrustedWaiting()
	if err != nil {
		return nil, err
	}
	k.Waiting = waiting[id]
	return k, nil
}

// SeenKeys returns every seen key, sorted by id, with the number of
// quarantined events that wait for each now. Unreadable records are
// skipped.
func (b *Backpack) SeenKeys() ([]SeenKey, error) {
	dir, err := b.seenDir()
	if err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(dir, "bp1_*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	waiting, err := b.UntrustedWaiting()
	if err != nil {
		return nil, err
	}
	var out []SeenKey
	for _, n := range names {
		id := strings.TrimSuffix(filepath.Base(n), ".json")
		if !IsKeyID(id) {
			continue
		}
		k, err := readSeenKey(dir, id)
		if err != nil {
			continue
		}
		k.Waiting = waiting[id]
		out = append(out, *k)
	}
	return out, nil
}

// UntrustedWaiting counts the quarantined events per key id that keys.json
// does not list (events by revoked keys and rejected events without a key
// are not counted).
func (b *Backpack) UntrustedWaiting() (map[string]int, error) {
	hs, err := b.Held("quarantine")
	if err != nil {
		return nil, err
	}
	reg := b.Registry()
	out := map[string]int{}
	for _, h := range hs {
		if h.KeyID == "" || h.EventID == "" {
			continue
		}
		if _, known := reg.Key(h.KeyID); !known {
			out[h.KeyID]++
		}
	}
	return out, nil
}

func (b *Backpack) seenDir() (string, error) {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dev, seenKeysDir), nil
}

// readSeenKey reads and checks one record.
func readSeenKey(dir, id string) (*SeenKey, error) {
	data, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrKeyNotSeen, id)
	}
	if err != nil {
		return nil, err
	}
	v, err := canon.Limits{MaxSize: 1 << 16}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("store: seen key %s: %w", id, err)
	}
	k := &SeenKey{
		KeyID:       v.Field("key_id").Str(),
		PublicKey:   v.Field("public_key_b64").Str(),
		Fingerprint: Fingerprint(id),
		FirstSeen:   v.Field("first_seen_utc").Str(),
		LastSeen:    v.Field("last_seen_utc").Str(),
	}
	if n, ok := v.Field("waiting_events").Int64(); ok {
		k.Waiting = int(n)
	}
	for _, s := range v.Field("sources").Elems() {
		k.Sources = append(k.Sources, s.Str())
	}
	if k.KeyID != id {
		return nil, fmt.Errorf("store: seen key %s: the record names %q", id, k.KeyID)
	}
	if _, err := k.Public(); err != nil {
		return nil, err
	}
	return k, nil
}

// value is the record as stored (without the derived fingerprint).
func (k *SeenKey) value() canon.Value {
	srcs := make([]canon.Value, len(k.Sources))
	for i, s := range k.Sources {
		srcs[i] = canon.StringValue(s)
	}
	var o canon.ObjectBuilder
	o.Set("key_id", canon.StringValue(k.KeyID)).
		Set("public_key_b64", canon.StringValue(k.PublicKey)).
		Set("sources", canon.ArrayValue(srcs...)).
		Set("first_seen_utc", canon.StringValue(k.FirstSeen)).
		Set("last_seen_utc", canon.StringValue(k.LastSeen)).
		Set("waiting_events", canon.IntValue(int64(k.Waiting)))
	return o.Value()
}
