package scan_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/scan"
	bplog "github.com/backpack-field/backpack/log"
)

// signedLog returns n signed events from k actors as events.ndjson bytes,
// and the keys.json that registers the actors' keys.
func signedLog(tb testing.TB, n, k int) ([]byte, *bplog.Registry) {
	tb.Helper()
	var keys []bplog.PrivateKey
	var entries []canon.Value
	for i := range k {
		seed := make([]byte, 32)
		seed[0] = byte(i + 1)
		priv := ed25519.NewKeyFromSeed(seed)
		pk := bplog.PrivateKey{ID: bplog.KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
		keys = append(keys, pk)
		entries = append(entries, bplog.KeyEntry(pk.Public(), []string{"attestation"}, "2026-01-01T00:00:00+00:00"))
	}
	reg, err := bplog.ParseRegistry(canon.MustEncode(canon.ObjectValue(canon.Member{Key: "keys", Value: canon.ArrayValue(entries...)})))
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	heads := make([]string, k)
	for i := range n {
		a := i % k
		prev := canon.NullValue()
		if heads[a] != "" {
			prev = canon.StringValue(heads[a])
		}
		var p, b canon.ObjectBuilder
		p.Set("subject", canon.StringValue(fmt.Sprintf("waterpoint_%04d", i%2000))).Set("predicate", canon.StringValue("status")).
			Set("value", canon.StringValue([]string{"working", "broken", "dry"}[i%3])).Set("confidence", canon.FloatValue(0.1*float64(1+i%9)))
		b.Set("type", canon.StringValue("OBSERVATION")).Set("namespace", canon.StringValue("local")).Set("actor", canon.StringValue(fmt.Sprintf("field_team_%d", a))).
			Set("ts_logical", canon.IntValue(int64(i/k+1))).Set("prev_event_hash", prev).
			Set("timestamp_utc", canon.StringValue(fmt.Sprintf("2026-01-01T%02d:%02d:%02d.%06d+00:00", i/3600%24, i/60%60, i%60, i%1000000))).Set("payload", p.Value())
		e, line, err := keys[a].Signer().Seal(b.Value())
		if err != nil {
			tb.Fatal(err)
		}
		heads[a] = e.ID
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), reg
}

func TestOrderAndVerification(t *testing.T) {
	data, reg := signedLog(t, 3000, 5)
	// Damage line 1234's signature.
	lines := bytes.SplitAfter(data, []byte("\n"))
	i := bytes.Index(lines[1233], []byte(`"sig":"`)) + 8
	if lines[1233][i] == 'A' {
		lines[1233][i] = 'B'
	} else {
		lines[1233][i] = 'A'
	}
	data = bytes.Join(lines, nil)
	next := 1
	bad := 0
	err := scan.Run(context.Background(), bytes.NewReader(data), scan.Options{Workers: 4, Registry: reg}, func(it *scan.Item) error {
		if it.Number != next {
			t.Fatalf("item %d delivered when %d was due", it.Number, next)
		}
		next++
		if it.Err != nil || it.Event == nil || !it.Canonical || it.IDRule != bplog.IDProfile {
			t.Fatalf("line %d: %+v", it.Number, it)
		}
		if it.SigErr != nil {
			bad++
			if it.Number != 1234 {
				t.Errorf("line %d: %v", it.Number, it.SigErr)
			}
		}
		return nil
	})
	if err != nil || next != 3001 || bad != 1 {
		t.Fatalf("err %v next %d bad %d", err, next, bad)
	}
}

func TestStopsOnCallbackError(t *testing.T) {
	data, _ := signedLog(t, 2000, 2)
	stop := fmt.Errorf("stop")
	n := 0
	err := scan.Run(context.Background(), bytes.NewReader(data), scan.Options{}, func(it *scan.Item) error {
		n++
		if n == 700 {
			return stop
		}
		return nil
	})
	if err != stop || n != 700 {
		t.Fatalf("err %v after %d items", err, n)
	}
}

var benchOnce sync.Once
var benchLog []byte
var benchReg *bplog.Registry

// BenchmarkVerify100k measures parse + event_id + signature checks of a
// 100,000-event, 5-actor log in memory, reported as events/s.
func BenchmarkVerify100k(b *testing.B) {
	benchOnce.Do(func() { benchLog, benchReg = signedLog(b, 100000, 5) })
	b.SetBytes(int64(len(benchLog)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		err := scan.Run(context.Background(), bytes.NewReader(benchLog), scan.Options{Registry: benchReg}, func(it *scan.Item) error {
			if it.SigErr != nil {
				return it.SigErr
			}
			n++
			return nil
		})
		if err != nil || n != 100000 {
			b.Fatal(err, n)
		}
	}
	b.ReportMetric(float64(100000*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
}
