package log_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// FuzzParseEvent: the event line parser never panics, and an accepted
// event re-encodes to a line that parses to the same envelope and id rule.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"actor":"alice","actor_key_id":"bp1_56475aa75463474c","event_id":"evt_f12b740da8e0169554e72121","namespace":"local","payload":{"confidence":0.9,"predicate":"state","subject":"door","value":"open"},"prev_event_hash":null,"sig":"ihz0QCA2abhaU/KMIT2xRP6LysuvHGMBuK7kPSYxp7/wGCp4NKBHb81ws//k90Tiqf7d3YTnlawgOQFgfB0aBw==","timestamp_utc":"2026-01-02T03:04:05.000001+00:00","ts_logical":1,"type":"OBSERVATION"}`))
	f.Add([]byte(`{"event_id":"evt_1","type":"X","actor":"a","prev_event_hash":7}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := bplog.Parse(line)
		if err != nil {
			return
		}
		enc, err := canon.Encode(e.Value)
		if err != nil {
			return
		}
		full, signed, idPre, err := e.Encodings()
		if err != nil {
			t.Fatalf("Encodings: %v", err)
		}
		sb, _ := e.SignedBytes()
		pre, _ := canon.Encode(e.Value.Without("event_id", "sig"))
		if !bytes.Equal(full, enc) || !bytes.Equal(signed, sb) || !bytes.Equal(idPre, pre) {
			t.Fatalf("Encodings disagree with Encode")
		}
		e2, err := bplog.Parse(enc)
		if err != nil {
			t.Fatalf("canonical line %q does not parse: %v", enc, err)
		}
		if e2.ID != e.ID || e2.Actor != e.Actor || e2.Prev != e.Prev || e2.HasPrev != e.HasPrev || e2.Sig != e.Sig {
			t.Fatalf("envelope changed")
		}
		r1, _, _ := e.CheckID()
		r2, _, _ := e2.CheckID()
		if r1 != r2 {
			t.Fatalf("id rule changed")
		}
	})
}

// FuzzReader: the reader never panics, never loses bytes (the spans of
// the lines it returns, blank ones aside, lie in order inside the input),
// and every returned line's text is inside its span.
func FuzzReader(f *testing.F) {
	f.Add([]byte("a\r\nb\rc\n\n  \x1c\t\n\xc2\xa0d\n\xff\nlast"))
	f.Add([]byte("\r\r\n\n\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bplog.NewReader(bytes.NewReader(data))
		var last int64
		n := 0
		for r.Next() {
			l := r.Line()
			if l.Offset < last || l.End < l.Offset || l.End > int64(len(data)) || l.Number <= n {
				t.Fatalf("bad span %+v after %d", l, last)
			}
			if l.Err == nil && !bytes.Contains(data[l.Offset:l.End], l.Text) {
				t.Fatalf("text %q not in span", l.Text)
			}
			if l.Err == nil && (bytes.ContainsAny(l.Text, "\r\n") || strings.TrimSpace(string(l.Text)) == "") {
				t.Fatalf("line text %q", l.Text)
			}
			last, n = l.End, l.Number
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
	})
}

// FuzzParseKeyFiles: the keys.json and key file parsers never panic, and
// a key file they accept re-encodes to one that parses to the same keys.
func FuzzParseKeyFiles(f *testing.F) {
	f.Add([]byte(`{"keys":[{"key_id":"bp1_56475aa75463474c","private_key_b64":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","algorithm":"Ed25519"}],"actor":"a"}`))
	f.Add([]byte(`{"WARNING":"x","bp1_56475aa75463474c":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}`))
	f.Add([]byte(`{"keys":[{"key_id":"bp1_56475aa75463474c","algorithm":"Ed25519","public_key_b64":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=","status":"active"}],"revocations":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if reg, err := bplog.ParseRegistry(data); err == nil {
			for _, k := range reg.Keys() {
				reg.Resolve(k.ID)
			}
		}
		kf, err := bplog.ParseKeyFile(data)
		if err != nil {
			return
		}
		kf2, err := bplog.ParseKeyFile(kf.Encode())
		if err != nil || len(kf2.Keys) != len(kf.Keys) || kf2.Actor != kf.Actor {
			t.Fatalf("key file does not round-trip: %v", err)
		}
		for i := range kf.Keys {
			if kf.Keys[i].ID != kf2.Keys[i].ID {
				t.Fatalf("key %d changed", i)
			}
		}
	})
}

// FuzzParseFrontier: never panics; accepted frontiers round-trip.
func FuzzParseFrontier(f *testing.F) {
	f.Add([]byte(`{"actors":{"a":{"count":3,"head":"evt_1"}},"format":"backpack.frontier.v1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := bplog.ParseFrontier(data)
		if err != nil {
			return
		}
		fr2, err := bplog.ParseFrontier(fr.Encode())
		if err != nil || fr2.Digest() != fr.Digest() || len(fr2) != len(fr) {
			t.Fatalf("frontier does not round-trip: %v", err)
		}
	})
}

// FuzzMergeOrder runs the merge order properties (every chain kept, any
// permutation gives the same order, equal to the reference's sort when
// that keeps the chains, merging is commutative, associative and
// idempotent) on a random event set drawn from seed.
func FuzzMergeOrder(f *testing.F) {
	f.Add(uint64(1), uint8(10), uint8(0))
	f.Add(uint64(2), uint8(200), uint8(1))
	f.Add(uint64(3), uint8(50), uint8(2))
	f.Fuzz(func(t *testing.T, seed uint64, n, mode uint8) {
		var st propertyStats
		checkProperties(t, seed, 1+int(n), genMode(mode%3), &st)
	})
}
