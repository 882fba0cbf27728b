package bundles_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	bplog "github.com/backpack-field/backpack/log"
)

// Fixed test seeds. The first two are extra_vectors.json's k1 and k2
// (TestKeysMatchVectors checks that); the others are throw-away.
var seedsHex = []string{
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	"a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5",
	"1111111111111111111111111111111111111111111111111111111111111111",
	"2222222222222222222222222222222222222222222222222222222222222222",
	"3333333333333333333333333333333333333333333333333333333333333333",
}

func testKey(tb testing.TB, i int) bplog.PrivateKey {
	tb.Helper()
	seed, err := hex.DecodeString(seedsHex[i])
	if err != nil {
		tb.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return bplog.PrivateKey{ID: bplog.KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
}

// registry returns a keys.json registry trusting the given test keys.
func registry(tb testing.TB, keys ...int) *bplog.Registry {
	tb.Helper()
	var entries []canon.Value
	for _, i := range keys {
		entries = append(entries, bplog.KeyEntry(testKey(tb, i).Public(), []string{"device"}, "2026-01-01T00:00:00+00:00"))
	}
	var b canon.ObjectBuilder
	b.Set("keys", canon.ArrayValue(entries...)).Set("revocations", canon.ArrayValue())
	reg, err := bplog.ParseRegistry(canon.MustEncode(b.Value()))
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

var (
	predicates = []string{"status", "water_level_cm", "temperature_c", "queue_length", "battery_pct"}
	states     = []string{"working", "broken", "dry", "open", "closed", "flooded", "repaired", "needs_inspection"}
)

// realistic returns n signed events (canonical lines) of 5 actors, each
// with its own key: mostly observations of a few hundred subjects with
// confidences, some assertions, chained through prev_event_hash, with
// +00:00 timestamps a few seconds apart. The same seed gives the same
// events. It also returns the resulting frontier.
func realistic(tb testing.TB, n int, seed uint64) ([][]byte, bplog.Frontier) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	const actors = 5
	signers := make([]bplog.Signer, actors)
	for i := range signers {
		signers[i] = testKey(tb, i).Signer()
	}
	fr := bplog.Frontier{}
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	out := make([][]byte, 0, n)
	for i := range n {
		a := rng.IntN(actors)
		actor := fmt.Sprintf("surveyor_%d", a+1)
		now = now.Add(time.Duration(500+rng.IntN(8000))*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond)
		subject := fmt.Sprintf("waterpoint_%03d", rng.IntN(400))
		pred := predicates[rng.IntN(len(predicates))]
		var value canon.Value
		switch pred {
		case "status":
			value = canon.StringValue(states[rng.IntN(len(states))])
		case "queue_length", "battery_pct":
			value = canon.IntValue(int64(rng.IntN(100)))
		default:
			value = canon.FloatValue(float64(rng.IntN(4000)) / 100)
		}
		var p canon.ObjectBuilder
		p.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue(pred)).Set("value", value)
		typ := "OBSERVATION"
		if rng.IntN(5) == 0 {
			typ = "ASSERTION"
		} else {
			p.Set("confidence", canon.FloatValue(float64(5+rng.IntN(6))/10))
		}
		prev := canon.NullValue()
		if h, ok := fr[actor]; ok {
			prev = canon.StringValue(h.Head)
		}
		var b canon.ObjectBuilder
		b.Set("type", canon.StringValue(typ)).
			Set("namespace", canon.StringValue("local")).
			Set("actor", canon.StringValue(actor)).
			Set("prev_event_hash", prev).
			Set("timestamp_utc", canon.StringValue(pytime.FormatUTC(now))).
			Set("payload", p.Value())
		e, line, err := signers[a].Seal(b.Value())
		if err != nil {
			tb.Fatalf("event %d: %v", i, err)
		}
		fr[actor] = bplog.ActorHead{Head: e.ID, Count: fr[actor].Count + 1}
		out = append(out, line)
	}
	return out, fr
}

const testUID = "bp_7f3a9c2e-1d4b-4e8f-9a6c-0b5d2e7f1a3c"

// header returns a header for events with frontier fr, sent by test key 0.
func header(fr bplog.Frontier) bundles.Header {
	return bundles.Header{
		UID:       testUID,
		Sender:    fr,
		Basis:     bplog.Frontier{},
		CreatedAt: "2026-03-02T10:20:30.123456+00:00",
	}
}

// encode encodes events with test key 0 and the default options.
func encode(tb testing.TB, events [][]byte, fr bplog.Frontier) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := bundles.Encode(&buf, header(fr), events, testKey(tb, 0).Key, bundles.EncodeOptions{}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
