package log

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/backpack-field/backpack/internal/canon"
)

// KeyIDPrefix starts every key id.
const KeyIDPrefix = "bp1_"

// maxKeysFile bounds identity/keys.json and private key files.
const maxKeysFile = 4 << 20

// KeyID returns "bp1_" + the first 16 hex digits of SHA-256 of the raw
// 32-byte public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return KeyIDPrefix + hex.EncodeToString(sum[:8])
}

// Key statuses as the reference writes them.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
)

// Key is one entry of identity/keys.json.
type Key struct {
	ID                string
	Algorithm         string
	PublicKeyB64      string
	Public            ed25519.PublicKey // nil when public_key_b64 is missing or invalid
	Verifier          *VerifyKey        // Public prepared for verification (nil with Public)
	Roles             []string
	Status            string
	RevocationEventID string // set by key rotation on the revoked entry
	PromotionEventID  string // set by key rotation on the new entry
	Raw               canon.Value
}

// Registry is identity/keys.json as the reference loads it: key id ->
// entry, built in file order, a later duplicate replacing an earlier one,
// entries without a key_id skipped. The revocations list is kept but, as
// in the reference, not consulted: an entry's status decides.
type Registry struct {
	keys  map[string]*Key
	order []string
	raw   canon.Value
}

// ParseRegistry parses identity/keys.json.
func ParseRegistry(data []byte) (*Registry, error) {
	v, err := canon.Limits{MaxSize: maxKeysFile}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("keys.json: %w", err)
	}
	if v.Kind() != canon.Object {
		return nil, errors.New("keys.json: not a JSON object")
	}
	keys := v.Field("keys")
	if keys.Kind() != canon.Array {
		return nil, errors.New(`keys.json: "keys" is not a list`)
	}
	r := &Registry{keys: map[string]*Key{}, raw: v}
	for i := range keys.Len() {
		ev := keys.Index(i)
		if ev.Kind() != canon.Object {
			continue
		}
		id := ev.Field("key_id").Str()
		if id == "" {
			continue
		}
		k := &Key{
			ID:                id,
			Algorithm:         ev.Field("algorithm").Str(),
			PublicKeyB64:      ev.Field("public_key_b64").Str(),
			Status:            ev.Field("status").Str(),
			RevocationEventID: ev.Field("revocation_event_id").Str(),
			PromotionEventID:  ev.Field("promotion_event_id").Str(),
			Raw:               ev,
		}
		for _, role := range ev.Field("roles").Elems() {
			k.Roles = append(k.Roles, role.Str())
		}
		if pub, err := base64.StdEncoding.DecodeString(k.PublicKeyB64); err == nil && len(pub) == ed25519.PublicKeySize {
			if vk, err := NewVerifyKey(pub); err == nil {
				k.Public, k.Verifier = pub, vk
			}
		}
		if _, dup := r.keys[id]; !dup {
			r.order = append(r.order, id)
		}
		r.keys[id] = k
	}
	return r, nil
}

// Key returns the entry for id.
func (r *Registry) Key(id string) (*Key, bool) {
	k, ok := r.keys[id]
	return k, ok
}

// Keys returns the entries in file order.
func (r *Registry) Keys() []*Key {
	out := make([]*Key, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, r.keys[id])
	}
	return out
}

// Resolve returns the public key for id the way the reference resolves it:
// ErrUnknownKey when the id is unknown or its public key is missing or
// invalid, ErrRevokedKey (with the key) when its status is "revoked".
func (r *Registry) Resolve(id string) (ed25519.PublicKey, error) {
	k, ok := r.keys[id]
	if !ok || k.Public == nil {
		return nil, ErrUnknownKey
	}
	if k.Status == StatusRevoked {
		return k.Public, ErrRevokedKey
	}
	return k.Public, nil
}

// ResolveVerifier is Resolve returning the prepared key.
func (r *Registry) ResolveVerifier(id string) (*VerifyKey, error) {
	k, ok := r.keys[id]
	if !ok || k.Verifier == nil {
		return nil, ErrUnknownKey
	}
	if k.Status == StatusRevoked {
		return k.Verifier, ErrRevokedKey
	}
	return k.Verifier, nil
}

// KeyEntry builds a keys.json entry for a new key, with the reference's
// field order.
func KeyEntry(pub ed25519.PublicKey, roles []string, createdAt string) canon.Value {
	rv := make([]canon.Value, len(roles))
	for i, r := range roles {
		rv[i] = canon.StringValue(r)
	}
	return canon.OrderedObject(
		canon.Member{Key: "key_id", Value: canon.StringValue(KeyID(pub))},
		canon.Member{Key: "algorithm", Value: canon.StringValue("Ed25519")},
		canon.Member{Key: "public_key_b64", Value: canon.StringValue(base64.StdEncoding.EncodeToString(pub))},
		canon.Member{Key: "roles", Value: canon.ArrayValue(rv...)},
		canon.Member{Key: "scopes", Value: canon.ArrayValue(canon.StringValue("all"))},
		canon.Member{Key: "status", Value: canon.StringValue(StatusActive)},
		canon.Member{Key: "created_at_utc", Value: canon.StringValue(createdAt)},
	)
}

// PrivateKey is a device signing key.
type PrivateKey struct {
	ID  string
	Key ed25519.PrivateKey
}

// Signer returns a Signer for k.
func (k PrivateKey) Signer() Signer { return Signer{KeyID: k.ID, Key: k.Key} }

// Public returns k's public key.
func (k PrivateKey) Public() ed25519.PublicKey { return k.Key.Public().(ed25519.PublicKey) }

// GenerateKey makes a new Ed25519 key from rand.
func GenerateKey(rand io.Reader) (PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return PrivateKey{}, err
	}
	return PrivateKey{ID: KeyID(pub), Key: priv}, nil
}

// KeyFromSeedB64 returns the key for a base64 32-byte seed (the form the
// reference stores).
func KeyFromSeedB64(b64 string) (PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(seed) != ed25519.SeedSize {
		return PrivateKey{}, errors.New("log: private_key_b64 is not a base64 32-byte Ed25519 seed")
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return PrivateKey{ID: KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}, nil
}

// KeyFile is a file of private keys kept outside the backpack (or a
// reference-made identity/private_keys.json inside it).
type KeyFile struct {
	Keys  []PrivateKey
	Actor string // the actor label this device writes as ("" if unset)
	UID   string // the backpack uid the file was made for ("" if unset)
}

// ParseKeyFile reads any of the reference's private key formats:
// {"keys":[{"key_id","private_key_b64",...}]} (provara init), a flat
// {"<key_id>": "<seed b64>"} map (a "WARNING" member ignored), or
// bootstrap's {"root": {...}, "quorum": {...}}. backpack's own files are
// the first form plus "actor" and "backpack_uid" members. Every key id is
// checked against its seed.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	v, err := canon.Limits{MaxSize: maxKeysFile}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if v.Kind() != canon.Object {
		return nil, errors.New("key file: not a JSON object")
	}
	kf := &KeyFile{Actor: v.Field("actor").Str(), UID: v.Field("backpack_uid").Str()}
	add := func(id string, b64 canon.Value) error {
		k, err := KeyFromSeedB64(b64.Str())
		if err != nil {
			return fmt.Errorf("key file: key %s: %w", id, err)
		}
		if id != "" && id != k.ID {
			return fmt.Errorf("key file: key_id %s does not match its private key (which is %s)", id, k.ID)
		}
		kf.Keys = append(kf.Keys, k)
		return nil
	}
	switch keys := v.Field("keys"); {
	case keys.Kind() == canon.Array:
		for _, e := range keys.Elems() {
			if err := add(e.Field("key_id").Str(), e.Field("private_key_b64")); err != nil {
				return nil, err
			}
		}
	case v.Field("root").Kind() == canon.Object:
		for _, name := range []string{"root", "quorum"} {
			if e := v.Field(name); e.Kind() == canon.Object {
				if err := add(e.Field("key_id").Str(), e.Field("private_key_b64")); err != nil {
					return nil, err
				}
			}
		}
	default:
		for _, m := range v.Members() {
			if m.Key == "WARNING" || m.Key == "actor" || m.Key == "backpack_uid" {
				continue
			}
			if err := add(m.Key, m.Value); err != nil {
				return nil, err
			}
		}
	}
	if len(kf.Keys) == 0 {
		return nil, errors.New("key file: no keys")
	}
	return kf, nil
}

// Encode writes kf in the reference CLI's format (so `provara append
// --keyfile` can use it too) plus backpack's actor and backpack_uid.
func (kf *KeyFile) Encode() []byte {
	var keys []canon.Value
	for _, k := range kf.Keys {
		keys = append(keys, canon.OrderedObject(
			canon.Member{Key: "key_id", Value: canon.StringValue(k.ID)},
			canon.Member{Key: "private_key_b64", Value: canon.StringValue(base64.StdEncoding.EncodeToString(k.Key.Seed()))},
			canon.Member{Key: "algorithm", Value: canon.StringValue("Ed25519")},
		))
	}
	members := []canon.Member{{Key: "keys", Value: canon.ArrayValue(keys...)}}
	if kf.Actor != "" {
		members = append(members, canon.Member{Key: "actor", Value: canon.StringValue(kf.Actor)})
	}
	if kf.UID != "" {
		members = append(members, canon.Member{Key: "backpack_uid", Value: canon.StringValue(kf.UID)})
	}
	b, err := canon.AppendIndent(nil, canon.OrderedObject(members...))
	if err != nil {
		panic("bug: " + err.Error())
	}
	return append(b, '\n')
}

// Find returns the key with the given id.
func (kf *KeyFile) Find(id string) (PrivateKey, bool) {
	for _, k := range kf.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return PrivateKey{}, false
}
