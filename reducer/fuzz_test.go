package reducer_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/reducer"
)

// FuzzApply feeds arbitrary NDJSON to the reducer: it must never panic,
// the incremental hash must equal a fresh replay's, and a state that can be
// hashed must survive the binary and the JSON persistence round trips.
func FuzzApply(f *testing.F) {
	f.Add(`{"type":"OBSERVATION","event_id":"e1","payload":{"subject":"s","predicate":"p","value":1,"confidence":0.9}}
{"type":"OBSERVATION","event_id":"e2","payload":{"subject":"s","predicate":"p","value":true,"confidence":"0.95"}}
{"type":"ATTESTATION","event_id":"e3","payload":{"subject":"s","predicate":"p","value":2}}`)
	f.Add(`{"type":"REDUCER_EPOCH","payload":{"epoch_id":NaN}}` + "\r" + `[1]` + "\n" + `{"type":"RETRACTION","payload":{"subject":[1],"predicate":{"k":"'"}}}`)
	f.Add(`{"type":"OBSERVATION","payload":{"subject":"s","predicate":"p","value":[NaN],"confidence":1e400}}
{"type":"OBSERVATION","payload":{"subject":"s","predicate":"p","value":[NaN],"confidence":"inf"}}`)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		g := newOddLog(rng)
		var lines []string
		for i := range 1 + rng.IntN(12) {
			lines = append(lines, g.line(i))
		}
		f.Add(strings.Join(lines, "\n"))
	}
	f.Fuzz(func(t *testing.T, text string) {
		events := readLog(text)
		s := reducer.New()
		var got string
		for i, ev := range events {
			got = outcome(s, s.Apply(ev))
			if i%4 == 3 || i == len(events)-1 {
				if want := fullReplay(events[:i+1]); got != want {
					t.Fatalf("event %d: incremental %s, replay %s", i, got, want)
				}
			}
			if got == "!apply" {
				return
			}
		}
		s.ExportJSON()
		bin, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var d reducer.State
		if err := d.UnmarshalBinary(bin); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if o := outcome(&d, nil); o != outcome(s, nil) {
			t.Fatalf("decoded %s, original %s", o, outcome(s, nil))
		}
		pre, err := s.PreimageValue()
		if err != nil {
			return
		}
		r, err := reducer.Restore(pre, s.Evidence())
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if o := outcome(r, nil); o != outcome(s, nil) {
			t.Fatalf("restored %s, original %s", o, outcome(s, nil))
		}
		for ns := range 4 {
			for range s.Entries(reducer.Namespace(ns)) {
			}
		}
	})
}

// fixChecksum rewrites the trailing CRC-32C so that mutated inputs reach
// the decoder proper.
func fixChecksum(data []byte) []byte {
	if len(data) < 4 {
		return data
	}
	out := bytes.Clone(data)
	body := out[:len(out)-4]
	binary.LittleEndian.PutUint32(out[len(out)-4:], crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// FuzzUnmarshalBinary requires the binary decoder to never panic, to
// reject with ErrCorrupt, and to re-encode anything it accepts to the same
// bytes; the decoded state must be usable.
func FuzzUnmarshalBinary(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 12 {
		g := newOddLog(rng)
		s := reducer.New()
		for i := range 1 + rng.IntN(15) {
			if s.Apply(mustParse(f, g.line(i))) != nil {
				break
			}
		}
		if bin, err := s.MarshalBinary(); err == nil {
			f.Add(bin)
		}
	}
	empty, _ := reducer.New().MarshalBinary()
	f.Add(empty)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, fixChecksum(data)} {
			var s reducer.State
			err := s.UnmarshalBinary(in)
			if err != nil {
				if !errors.Is(err, reducer.ErrCorrupt) {
					t.Fatalf("error %v does not wrap ErrCorrupt", err)
				}
				continue
			}
			again, err := s.MarshalBinary()
			if err != nil || !bytes.Equal(again, in) {
				t.Fatalf("accepted input re-encodes differently (%v)", err)
			}
			s.StateHash()
			s.ExportJSON()
			s.Evidence()
			for ns := range 4 {
				for range s.Entries(reducer.Namespace(ns)) {
				}
			}
			s.Apply(mustParse(t, `{"type":"OBSERVATION","payload":{"subject":"s","predicate":"p","value":1,"confidence":0.9}}`))
			s.StateHash()
		}
	})
}
