package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	bplog "github.com/backpack-field/backpack/log"
)

// Devices and keys. Every device of a backpack has its own Ed25519 key. A
// new device (join) starts from a copy of the backpack and a new key; an
// existing device trusts it by appending a signed KEY_PROMOTION event (the
// reference's event type and payload) that names the new public key. Any
// replica that applies a KEY_PROMOTION signed by a key it trusts adds the
// key to identity/keys.json, in log order, with the same bytes everywhere,
// so keys.json converges like the log (the reference never merges keys).
// Events by the new key that waited in the quarantine are then retried.

// KeyPromotionType is the event type that adds a key.
const KeyPromotionType = "KEY_PROMOTION"

// keyEntryFor is the keys.json entry a KEY_PROMOTION event produces.
func keyEntryFor(e *bplog.Event) (canon.Value, string, bool) {
	p := e.Value.Field("payload")
	id := p.Field("new_key_id").Str()
	pubB64 := p.Field("new_public_key_b64").Str()
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil || len(pub) != ed25519.PublicKeySize || bplog.KeyID(pub) != id {
		return canon.Value{}, "", false
	}
	roles := p.Field("roles")
	if roles.Kind() != canon.Array {
		roles = canon.ArrayValue(canon.StringValue("attestation"))
	}
	return canon.OrderedObject(
		canon.Member{Key: "key_id", Value: canon.StringValue(id)},
		canon.Member{Key: "algorithm", Value: canon.StringValue("Ed25519")},
		canon.Member{Key: "public_key_b64", Value: canon.StringValue(pubB64)},
		canon.Member{Key: "roles", Value: roles},
		canon.Member{Key: "scopes", Value: canon.ArrayValue(canon.StringValue("all"))},
		canon.Member{Key: "status", Value: canon.StringValue(bplog.StatusActive)},
		canon.Member{Key: "created_at_utc", Value: canon.StringValue(p.Field("promoted_at_utc").Str())},
		canon.Member{Key: "promotion_event_id", Value: canon.StringValue(e.ID)},
	), id, true
}

// applyKeyEventsLocked adds the keys that KEY_PROMOTION events among evs
// name to identity/keys.json (replacing a provisional entry a joining
// device made for itself). It reports whether keys.json changed. The
// events were verified with a trusted key before they got here.
func (b *Backpack) applyKeyEventsLocked(evs []*bplog.Event) (bool, error) {
	var adds []*bplog.Event
	for _, e := range evs {
		if e.Type == KeyPromotionType && e.Value.Field("payload").Field("replaces_key_id").IsNull() {
			adds = append(adds, e)
		}
	}
	if len(adds) == 0 {
		return false, nil
	}
	data, err := os.ReadFile(b.path(KeysPath))
	if err != nil {
		return false, err
	}
	doc, err := canon.Parse(data)
	if err != nil {
		return false, err
	}
	keys := doc.Field("keys").Elems()
	changed := false
	for _, e := range adds {
		entry, id, ok := keyEntryFor(e)
		if !ok {
			b.log.Warn("KEY_PROMOTION names an invalid key; ignored", "event", e.ID)
			continue
		}
		found := false
		for i, k := range keys {
			if k.Field("key_id").Str() != id {
				continue
			}
			found = true
			if k.Field("promotion_event_id").Str() == "" && k.Field("status").Str() == bplog.StatusActive {
				keys[i], changed = entry, true // a joining device's own provisional entry
			}
		}
		if !found {
			keys, changed = append(keys, entry), true
		}
	}
	if !changed {
		return false, nil
	}
	out := canon.OrderedObject(
		canon.Member{Key: "keys", Value: canon.ArrayValue(keys...)},
		canon.Member{Key: "revocations", Value: orEmptyArray(doc.Field("revocations"))},
	)
	if err := writeFileAtomic(b.path(KeysPath), indentFile(out), 0o644); err != nil {
		return false, err
	}
	return true, b.loadKeys()
}

func orEmptyArray(v canon.Value) canon.Value {
	if v.Kind() != canon.Array {
		return canon.ArrayValue()
	}
	return v
}

// TrustKey makes pub a trusted key of the backpack: it appends a signed
// KEY_PROMOTION event, updates identity/keys.json, and retries the
// quarantined events (those by pub now apply).
func (b *Backpack) TrustKey(ctx context.Context, pub ed25519.PublicKey, roles []string) (*bplog.Event, *IngestResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writableLocked(); err != nil {
		return nil, nil, err
	}
	if b.signer == nil {
		return nil, nil, ErrNoKey
	}
	id := bplog.KeyID(pub)
	if k, ok := b.reg.Key(id); ok && k.Status == bplog.StatusActive && k.PromotionEventID != "" {
		return nil, nil, fmt.Errorf("store: key %s is already trusted", id)
	}
	rv := make([]canon.Value, len(roles))
	for i, r := range roles {
		rv[i] = canon.StringValue(r)
	}
	var p, body canon.ObjectBuilder
	p.Set("new_key_id", canon.StringValue(id)).
		Set("new_public_key_b64", canon.StringValue(base64.StdEncoding.EncodeToString(pub))).
		Set("algorithm", canon.StringValue("Ed25519")).
		Set("roles", canon.ArrayValue(rv...)).
		Set("promoted_by", canon.StringValue(b.signer.KeyID)).
		Set("replaces_key_id", canon.NullValue()).
		Set("promoted_at_utc", canon.StringValue(pytime.FormatUTC(b.opts.Now())))
	body.Set("type", canon.StringValue(KeyPromotionType)).Set("namespace", canon.StringValue("canonical")).Set("payload", p.Value())
	evs, err := b.appendBatchLocked([]canon.Value{body.Value()})
	if err != nil {
		return nil, nil, err
	}
	res, err := b.retryQuarantineLocked(ctx)
	return evs[0], res, err
}

// Fingerprint is a short, readable form of a key for people to compare
// aloud: the key id's 16 hex digits in groups of four.
func Fingerprint(keyID string) string {
	h := strings.TrimPrefix(keyID, bplog.KeyIDPrefix)
	var parts []string
	for len(h) > 4 {
		parts = append(parts, h[:4])
		h = h[4:]
	}
	return strings.Join(append(parts, h), " ")
}

// JoinOptions configures Join.
type JoinOptions struct {
	Actor   string // label the new device writes as (default backpack_<key hex>)
	KeyFile string // where its key goes (default in KeyDir, named by uid and key id)
	// Key is the new device's key when it already has one (a device that
	// announced itself in a peer folder before joining); nil makes one.
	Key *bplog.PrivateKey
	// Now dates the new key's entry in keys.json (default time.Now).
	Now func() time.Time
}

// JoinResult says what Join made.
type JoinResult struct {
	Dir         string `json:"dir"`
	UID         string `json:"uid"`
	KeyID       string `json:"key_id"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key_b64"`
	KeyFile     string `json:"key_file"`
	Actor       string `json:"actor"`
	// Imported and Held count the events a join from a bundle applied and
	// held back (quarantined, pending or rejected; normally none).
	Imported int `json:"imported,omitempty"`
	Held     int `json:"held,omitempty"`
}

// Join makes newDir a new device of the backpack in src (a backpack
// directory): a copy of it (private keys left out), a new device key
// (outside the backpack) and a provisional entry for that key in the copy's
// keys.json, so its own events verify locally. Other devices hold its
// events in quarantine until one of them runs TrustKey for it.
func Join(ctx context.Context, src, newDir string, opts JoinOptions) (*JoinResult, error) {
	g, err := ReadGenesis(src)
	if err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(newDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("store: %s is not empty", newDir)
	}
	abs, err := filepath.Abs(newDir)
	if err != nil {
		return nil, err
	}
	if err := copyBackpack(src, abs); err != nil {
		return nil, err
	}
	res, err := newDevice(g.UID, abs, opts)
	if err != nil {
		return nil, err
	}
	if err := reopen(ctx, abs, res.KeyFile); err != nil {
		return nil, err
	}
	return res, nil
}

// newDevice gives the backpack copy in abs (uid) a device key of its own:
// it writes the key file, adds the provisional entry for the key to the
// copy's keys.json (so its own events verify locally) and binds the key
// file to the replica.
func newDevice(uid, abs string, opts JoinOptions) (*JoinResult, error) {
	var key bplog.PrivateKey
	if opts.Key != nil {
		key = *opts.Key
	} else {
		var err error
		if key, err = bplog.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
	}
	if opts.Actor == "" {
		opts.Actor = "backpack_" + strings.TrimPrefix(key.ID, bplog.KeyIDPrefix)
	}
	now := timeNow
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.KeyFile == "" {
		d, err := KeyDir()
		if err != nil {
			return nil, err
		}
		opts.KeyFile = filepath.Join(d, safeName(uid)+"-"+strings.TrimPrefix(key.ID, bplog.KeyIDPrefix)+".json")
	}
	kf := &bplog.KeyFile{Keys: []bplog.PrivateKey{key}, Actor: opts.Actor, UID: uid}
	if err := os.MkdirAll(filepath.Dir(opts.KeyFile), 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(opts.KeyFile, kf.Encode(), 0o600); err != nil {
		return nil, err
	}
	// The provisional entry for the device's own key.
	data, err := os.ReadFile(filepath.Join(abs, filepath.FromSlash(KeysPath)))
	if err != nil {
		return nil, err
	}
	doc, err := canon.Parse(data)
	if err != nil {
		return nil, err
	}
	keys := append(doc.Field("keys").Elems(), bplog.KeyEntry(key.Public(), []string{"attestation"}, pytime.FormatUTC(now())))
	out := canon.OrderedObject(
		canon.Member{Key: "keys", Value: canon.ArrayValue(keys...)},
		canon.Member{Key: "revocations", Value: orEmptyArray(doc.Field("revocations"))},
	)
	if err := writeFileAtomic(filepath.Join(abs, filepath.FromSlash(KeysPath)), indentFile(out), 0o644); err != nil {
		return nil, err
	}
	if err := bindDevice(uid, abs, opts.KeyFile); err != nil {
		return nil, err
	}
	return &JoinResult{Dir: abs, UID: uid, KeyID: key.ID, Fingerprint: Fingerprint(key.ID),
		PublicKey: base64.StdEncoding.EncodeToString(key.Public()), KeyFile: opts.KeyFile, Actor: opts.Actor}, nil
}

// reopen opens the replica in dir as a writer and closes it, which
// rebuilds and re-signs the derived files with its device key.
func reopen(ctx context.Context, dir, keyFile string) error {
	b, err := Open(ctx, dir, Options{KeyFile: keyFile})
	if err != nil {
		return err
	}
	return b.Close()
}

// bindDevice records which key file belongs to the replica in dir, in its
// device directory (so replicas of one backpack on one machine each find
// their own key).
func bindDevice(uid, dir, keyFile string) error {
	dev, err := DeviceDir(uid, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dev, 0o700); err != nil {
		return err
	}
	var o canon.ObjectBuilder
	o.Set("key_file", canon.StringValue(keyFile))
	return writeFileAtomic(filepath.Join(dev, "device.json"), append(canon.MustEncode(o.Value()), '\n'), 0o600)
}

// boundKeyFile returns the key file bound to the replica, if any.
func boundKeyFile(uid, dir string) string {
	dev, err := DeviceDir(uid, dir)
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(dev, "device.json"))
	if err != nil {
		return ""
	}
	v, err := canon.Limits{MaxSize: 1 << 16}.Parse(data)
	if err != nil {
		return ""
	}
	return v.Field("key_file").Str()
}

var timeNow = func() time.Time { return time.Now() }

// copyBackpack copies a backpack directory, leaving out private keys and
// temp files.
func copyBackpack(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case filepath.ToSlash(rel) == PrivateKeysPath, strings.Contains(d.Name(), ".tmp-"), !d.Type().IsRegular():
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return writeFileAtomic(target, data, 0o644)
	})
}
