// Package gen makes realistic backpacks for benchmarks and large tests:
// several actors, each with its own key in identity/keys.json, writing
// observations, assertions, attestations, retractions and the occasional
// reducer epoch about a few thousand subjects, with enough disagreement
// that many beliefs become contested. Output is deterministic for a seed
// (apart from the keys' created_at_utc, which uses the same fixed clock).
package gen

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// Options configures Backpack.
type Options struct {
	Events int    // total events appended after init (default 1000)
	Actors int    // writing actors (default 5)
	Seed   uint64 // RNG seed
}

// Result describes a generated backpack.
type Result struct {
	Dir     string
	KeyFile string // the device (init) key file
	Keys    []bplog.PrivateKey
}

// Backpack creates a backpack in dir. Key files go under keyDir.
func Backpack(ctx context.Context, dir, keyDir string, opts Options) (*Result, error) {
	if opts.Events <= 0 {
		opts.Events = 1000
	}
	if opts.Actors <= 0 {
		opts.Actors = 5
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6261636b7061636b))
	t0 := time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	keyFile := filepath.Join(keyDir, "device.json")
	init, err := store.Init(ctx, dir, store.InitOptions{UID: fmt.Sprintf("gen-%d", opts.Seed), Actor: "base_camp", KeyFile: keyFile, Now: clock})
	if err != nil {
		return nil, err
	}
	// One key per actor, registered in keys.json.
	keysPath := filepath.Join(dir, store.KeysPath)
	data, err := os.ReadFile(keysPath)
	if err != nil {
		return nil, err
	}
	kv, err := canon.Parse(data)
	if err != nil {
		return nil, err
	}
	entries := kv.Field("keys").Elems()
	var keys []bplog.PrivateKey
	for i := range opts.Actors {
		var seed [32]byte
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		priv := ed25519.NewKeyFromSeed(seed[:])
		k := bplog.PrivateKey{ID: bplog.KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
		keys = append(keys, k)
		entries = append(entries, bplog.KeyEntry(k.Public(), []string{"attestation"}, pytime.FormatUTC(t0)))
		_ = i
	}
	out, err := canon.AppendIndent(nil, canon.OrderedObject(
		canon.Member{Key: "keys", Value: canon.ArrayValue(entries...)},
		canon.Member{Key: "revocations", Value: kv.Field("revocations")},
	))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keysPath, append(out, '\n'), 0o644); err != nil {
		return nil, err
	}

	f, err := os.OpenFile(filepath.Join(dir, store.EventsPath), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	heads := make([]string, opts.Actors)
	subjects := 2000
	for i := range opts.Events {
		a := rng.IntN(opts.Actors)
		now = now.Add(time.Duration(200+rng.IntN(5000)) * time.Millisecond)
		body := event(rng, fmt.Sprintf("field_team_%d", a+1), subjects, i)
		prev := canon.NullValue()
		if heads[a] != "" {
			prev = canon.StringValue(heads[a])
		}
		body = body.With("prev_event_hash", prev).With("timestamp_utc", canon.StringValue(pytime.FormatUTC(now)))
		e, line, err := keys[a].Signer().Seal(body)
		if err != nil {
			f.Close()
			return nil, err
		}
		heads[a] = e.ID
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	b, err := store.Open(ctx, dir, store.Options{KeyFile: keyFile, Now: clock})
	if err != nil {
		return nil, err
	}
	if _, err := b.RebuildManifest(); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.Close(); err != nil {
		return nil, err
	}
	return &Result{Dir: init.Dir, KeyFile: keyFile, Keys: keys}, nil
}

var predicates = []string{"status", "level", "temperature_c", "queue_length", "chlorine_mg_l"}
var words = []string{"working", "broken", "dry", "open", "closed", "flooded", "repaired"}

func event(rng *rand.Rand, actor string, subjects, i int) canon.Value {
	subject := fmt.Sprintf("waterpoint_%04d", zipf(rng, subjects))
	pred := predicates[rng.IntN(len(predicates))]
	var value canon.Value
	switch pred {
	case "status":
		value = canon.StringValue(words[rng.IntN(len(words))])
	case "level", "queue_length":
		value = canon.IntValue(int64(rng.IntN(100)))
	default:
		value = canon.FloatValue(float64(rng.IntN(400)) / 10)
	}
	var p canon.ObjectBuilder
	p.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue(pred))
	typ := "OBSERVATION"
	switch r := rng.IntN(100); {
	case r < 70:
		p.Set("value", value)
		if rng.IntN(10) > 0 {
			p.Set("confidence", canon.FloatValue(float64(1+rng.IntN(10))/10))
		}
	case r < 85:
		typ = "ASSERTION"
		p.Set("value", value)
	case r < 95:
		typ = "ATTESTATION"
		p.Set("value", value)
	case r < 99:
		typ = "RETRACTION"
	default:
		typ = "REDUCER_EPOCH"
		p = canon.ObjectBuilder{}
		p.Set("epoch_id", canon.StringValue(fmt.Sprintf("epoch_%d", i))).Set("reducer_hash", canon.StringValue("sha256:0"))
	}
	var b canon.ObjectBuilder
	b.Set("type", canon.StringValue(typ)).Set("namespace", canon.StringValue("local")).
		Set("actor", canon.StringValue(actor)).Set("payload", p.Value())
	return b.Value()
}

// zipf picks hot subjects more often, as real surveys revisit places.
func zipf(rng *rand.Rand, n int) int {
	x := rng.Float64()
	return int(float64(n) * x * x * x)
}
