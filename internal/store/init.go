package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	bplog "github.com/backpack-field/backpack/log"
)

// Genesis is identity/genesis.json.
type Genesis struct {
	UID            string
	BirthTimestamp string
	RootKeyID      string
	Raw            canon.Value
}

// ReadGenesis reads dir/identity/genesis.json.
func ReadGenesis(dir string) (*Genesis, error) {
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(GenesisPath)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotBackpack, dir)
	}
	if err != nil {
		return nil, err
	}
	v, err := canon.Limits{MaxSize: 1 << 20}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("genesis.json: %w", err)
	}
	g := &Genesis{
		UID:            v.Field("uid").Str(),
		BirthTimestamp: v.Field("birth_timestamp").Str(),
		RootKeyID:      v.Field("root_key_id").Str(),
		Raw:            v,
	}
	if g.UID == "" {
		return nil, fmt.Errorf("genesis.json: no uid")
	}
	return g, nil
}

// InitOptions configures Init.
type InitOptions struct {
	// UID of the new backpack (default a random UUIDv4, as the reference).
	UID string
	// Actor is the label the device writes as (default "backpack_" + the
	// key id's hex).
	Actor string
	// KeyFile is where the private key goes (default DefaultKeyPath(uid)).
	// It must be outside the backpack unless InsideKey is set.
	KeyFile string
	// Now returns the time (default time.Now).
	Now func() time.Time
	// Key is the device key to use; nil makes one (a simulation that
	// must repeat for a seed passes its own).
	Key *bplog.PrivateKey
}

// InitResult says what Init made.
type InitResult struct {
	Dir     string   `json:"dir"`
	UID     string   `json:"uid"`
	KeyID   string   `json:"key_id"`
	KeyFile string   `json:"key_file"`
	Actor   string   `json:"actor"`
	Events  []string `json:"event_ids"`
	Root    string   `json:"merkle_root"`
}

// Init creates a backpack in dir (which must be missing or empty) the way
// the reference's bootstrap does: the directory tree the compliance suite
// requires, genesis.json, keys.json with one root key, the four default
// policies, a GENESIS and a first OBSERVATION event, the manifest, Merkle
// root and a signed manifest.sig. The private key is written to a key file
// outside the backpack (mode 0600).
func Init(ctx context.Context, dir string, opts InitOptions) (*InitResult, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("store: %s is not empty", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if opts.UID == "" {
		opts.UID = newUUID()
	}
	var key bplog.PrivateKey
	if opts.Key != nil {
		key = *opts.Key
	} else if key, err = bplog.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	if opts.Actor == "" {
		opts.Actor = "backpack_" + key.ID[len(bplog.KeyIDPrefix):]
	}
	if opts.KeyFile == "" {
		if opts.KeyFile, err = DefaultKeyPath(opts.UID); err != nil {
			return nil, err
		}
	}
	keyAbs, err := filepath.Abs(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	if rel, err := filepath.Rel(abs, keyAbs); err == nil && filepath.IsLocal(rel) && rel != filepath.FromSlash(PrivateKeysPath) {
		return nil, fmt.Errorf("store: key file %s is inside the backpack; keep it outside (it would be listed in the manifest)", opts.KeyFile)
	}
	if _, err := os.Stat(keyAbs); err == nil {
		return nil, fmt.Errorf("store: key file %s already exists", opts.KeyFile)
	}

	for _, d := range requiredDirs {
		if err := os.MkdirAll(filepath.Join(abs, filepath.FromSlash(d)), 0o755); err != nil {
			return nil, err
		}
	}
	now := pytime.FormatUTC(opts.Now())
	genesis := obj(
		kv{Key: "uid", Value: str(opts.UID)},
		kv{Key: "birth_timestamp", Value: str(now)},
		kv{Key: "root_key_id", Value: str(key.ID)},
		kv{Key: "governance_model", Value: str("policies/sync_contract.json")},
		kv{Key: "initial_ontology_versions", Value: obj(kv{Key: "perception", Value: str("perception_ontology_v1.json")})},
	)
	keys := obj(
		kv{Key: "keys", Value: canon.ArrayValue(bplog.KeyEntry(key.Public(), []string{"root", "attestation"}, now))},
		kv{Key: "revocations", Value: canon.ArrayValue()},
	)
	files := []struct {
		path string
		v    canon.Value
	}{
		{GenesisPath, genesis},
		{KeysPath, keys},
		{"policies/safety_policy.json", safetyPolicy()},
		{"policies/sync_contract.json", syncContract(key.ID)},
		{"policies/retention_policy.json", retentionPolicy()},
		{"policies/ontology/perception_ontology_v1.json", ontology()},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(abs, filepath.FromSlash(f.path)), indentFile(f.v), 0o644); err != nil {
			return nil, err
		}
	}

	// The two seed events, as bootstrap writes them.
	signer := key.Signer()
	gen, genLine, err := signer.Seal(obj(
		kv{Key: "type", Value: str("GENESIS")},
		kv{Key: "namespace", Value: str("canonical")},
		kv{Key: "actor", Value: str(opts.Actor)},
		kv{Key: "ts_logical", Value: num(1)},
		kv{Key: "prev_event_hash", Value: canon.NullValue()},
		kv{Key: "timestamp_utc", Value: str(now)},
		kv{Key: "payload", Value: obj(
			kv{Key: "uid", Value: str(opts.UID)},
			kv{Key: "root_key_id", Value: str(key.ID)},
			kv{Key: "birth_timestamp", Value: str(now)},
			kv{Key: "spec_version", Value: str("1.0")},
		)},
	))
	if err != nil {
		return nil, err
	}
	seed, seedLine, err := signer.Seal(obj(
		kv{Key: "type", Value: str("OBSERVATION")},
		kv{Key: "namespace", Value: str("local")},
		kv{Key: "actor", Value: str(opts.Actor)},
		kv{Key: "ts_logical", Value: num(2)},
		kv{Key: "prev_event_hash", Value: str(gen.ID)},
		kv{Key: "timestamp_utc", Value: str(pytime.FormatUTC(opts.Now()))},
		kv{Key: "payload", Value: obj(
			kv{Key: "subject", Value: str("system")},
			kv{Key: "predicate", Value: str("status")},
			kv{Key: "value", Value: str("initialized")},
			kv{Key: "confidence", Value: canon.FloatValue(1.0)},
		)},
	))
	if err != nil {
		return nil, err
	}
	log := append(append(append(genLine, '\n'), seedLine...), '\n')
	if err := writeFileAtomic(filepath.Join(abs, filepath.FromSlash(EventsPath)), log, 0o644); err != nil {
		return nil, err
	}

	// The key file last but one: without it the backpack cannot be written.
	kf := &bplog.KeyFile{Keys: []bplog.PrivateKey{key}, Actor: opts.Actor, UID: opts.UID}
	if err := os.MkdirAll(filepath.Dir(keyAbs), 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyAbs, kf.Encode(), 0o600); err != nil {
		return nil, err
	}

	// Opening for write builds manifest.json, merkle_root.txt and a signed
	// manifest.sig.
	b, err := Open(ctx, abs, Options{KeyFile: keyAbs, Now: opts.Now})
	if err != nil {
		return nil, err
	}
	root := b.Snapshot().MerkleRoot
	if err := b.Close(); err != nil {
		return nil, err
	}
	return &InitResult{Dir: abs, UID: opts.UID, KeyID: key.ID, KeyFile: keyAbs, Actor: opts.Actor, Events: []string{gen.ID, seed.ID}, Root: root}, nil
}

func newUUID() string {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		panic("bug: crypto/rand failed: " + err.Error())
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
