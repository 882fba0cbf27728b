package radiosync_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// corpus is a generated backpack's log: lines and parsed events.
type corpus struct {
	lines  [][]byte
	events []*bplog.Event
}

var (
	corpusOnce sync.Once
	corpusData corpus
	corpusErr  error
)

// testCorpus generates (once per process) a 2,000-event backpack with
// 5 actors and returns its log.
func testCorpus(tb testing.TB) corpus {
	tb.Helper()
	corpusOnce.Do(func() {
		dir, err := os.MkdirTemp("", "radiosync-corpus-")
		if err != nil {
			corpusErr = err
			return
		}
		defer os.RemoveAll(dir)
		os.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
		res, err := gen.Backpack(tb.Context(), filepath.Join(dir, "bp"), filepath.Join(dir, "keys"), gen.Options{Events: 2000, Actors: 5, Seed: 1})
		if err != nil {
			corpusErr = err
			return
		}
		data, err := os.ReadFile(filepath.Join(res.Dir, store.EventsPath))
		if err != nil {
			corpusErr = err
			return
		}
		for l := range bytes.Lines(data) {
			l = bytes.TrimSuffix(l, []byte("\n"))
			e, err := bplog.Parse(l)
			if err != nil {
				corpusErr = err
				return
			}
			corpusData.lines = append(corpusData.lines, l)
			corpusData.events = append(corpusData.events, e)
		}
	})
	if corpusErr != nil {
		tb.Fatal(corpusErr)
	}
	return corpusData
}

// cutAt is the dictionary cut a Node makes for a receiver holding the
// first n events of c: the actors whose newest held event is newest,
// until they hold 200 events (or 8 actors).
func cutAt(c corpus, n int) []radiosync.CutEntry {
	counts := map[string]uint64{}
	for _, e := range c.events[:n] {
		counts[e.Actor]++
	}
	var cut []radiosync.CutEntry
	seen := map[string]bool{}
	held := uint64(0)
	for i := n - 1; i >= 0 && held < 200 && len(cut) < 8; i-- {
		a := c.events[i].Actor
		if seen[a] {
			continue
		}
		seen[a] = true
		cut = append(cut, radiosync.CutEntry{Actor: radiosync.ActorHash(a), Count: counts[a]})
		held += counts[a]
	}
	return cut
}

// holdsFirst says the receiver holds the first n events of c.
func holdsFirst(c corpus, n int) func(actor, id string) bool {
	held := map[string]bool{}
	for _, e := range c.events[:n] {
		held[e.ID] = true
	}
	return func(actor, id string) bool { return held[id] }
}

func resolverFirst(c corpus, n int) radiosync.Resolver {
	return func(actor string, p []byte) (string, string) {
		pfx := bplog.IDPrefix + hex.EncodeToString(p)
		for i := n - 1; i >= 0; i-- {
			if e := c.events[i]; e.Actor == actor && strings.HasPrefix(e.ID, pfx) {
				return e.ID, e.KeyID
			}
		}
		return "", ""
	}
}

// keyOfFirst is EncodeOptions.KeyOf for a receiver holding the first n
// events of c.
func keyOfFirst(c corpus, n int) func(string) string {
	keys := map[string]string{}
	for _, e := range c.events[:n] {
		keys[e.ID] = e.KeyID
	}
	return func(id string) string { return keys[id] }
}

func TestCompactRoundTrip(t *testing.T) {
	c := testCorpus(t)
	split := 1000
	dict := radiosync.BuildDict(c.events, cutAt(c, split))
	if dict == nil || len(dict.Data) == 0 || len(dict.Data) > radiosync.MaxDictSize {
		t.Fatalf("dictionary: %+v", dict)
	}
	for _, tc := range []struct {
		name string
		dict *radiosync.Dict
		n    int
	}{{"plain/1", nil, 1}, {"plain/10", nil, 10}, {"dict/1", dict, 1}, {"dict/10", dict, 10}, {"dict/100", dict, 100}} {
		t.Run(tc.name, func(t *testing.T) {
			var codec, recv radiosync.Codec
			for start := split; start+tc.n <= split+300; start += tc.n {
				lines := c.lines[start : start+tc.n]
				blob, err := codec.Encode(lines, radiosync.EncodeOptions{Dict: tc.dict, Holds: holdsFirst(c, start), KeyOf: keyOfFirst(c, start)})
				if err != nil {
					t.Fatal(err)
				}
				h, err := radiosync.ParseBatchHeader(blob)
				if err != nil {
					t.Fatal(err)
				}
				var rd *radiosync.Dict
				if h.HasDict {
					rd = radiosync.BuildDict(c.events, h.Cut)
				}
				got, err := recv.Decode(h, rd, resolverFirst(c, start))
				if err != nil {
					t.Fatalf("batch at %d: %v", start, err)
				}
				if len(got) != len(lines) {
					t.Fatalf("got %d lines, want %d", len(got), len(lines))
				}
				for i := range got {
					if !bytes.Equal(got[i], lines[i]) {
						t.Fatalf("line %d:\n got %s\nwant %s", start+i, got[i], lines[i])
					}
				}
			}
		})
	}
}

func TestCompactOneObservationFitsAFrame(t *testing.T) {
	c := testCorpus(t)
	dict := radiosync.BuildDict(c.events, cutAt(c, 1500))
	var codec radiosync.Codec
	n, worst := 0, 0
	for i := 1500; i < 2000; i++ {
		if c.events[i].Type != "OBSERVATION" {
			continue
		}
		blob, err := codec.Encode(c.lines[i:i+1], radiosync.EncodeOptions{Dict: dict, Holds: holdsFirst(c, i), KeyOf: keyOfFirst(c, i)})
		if err != nil {
			t.Fatal(err)
		}
		n++
		worst = max(worst, len(blob))
	}
	// One DATA frame carries 255 - radiosync.DataOverhead bytes of batch.
	if room := 255 - radiosync.DataOverhead; worst > room {
		t.Errorf("largest single OBSERVATION batch is %d bytes; one frame carries %d", worst, room)
	}
	t.Logf("%d OBSERVATION events alone: at most %d bytes each", n, worst)
}

func TestCompactWrongDict(t *testing.T) {
	c := testCorpus(t)
	var codec radiosync.Codec
	blob, err := codec.Encode(c.lines[1000:1010], radiosync.EncodeOptions{Dict: radiosync.BuildDict(c.events, cutAt(c, 1000))})
	if err != nil {
		t.Fatal(err)
	}
	h, err := radiosync.ParseBatchHeader(blob)
	if err != nil {
		t.Fatal(err)
	}
	other := radiosync.BuildDict(c.events, cutAt(c, 999))
	if _, err := codec.Decode(h, other, nil); !errors.Is(err, radiosync.ErrUnknownDict) || !errors.Is(err, radiosync.ErrBadBatch) {
		t.Errorf("decode with another dictionary: %v, want ErrUnknownDict", err)
	}
	if d := radiosync.BuildDict(c.events[:500], cutAt(c, 1000)); d != nil {
		t.Error("built a dictionary from a log that lacks part of the cut")
	}
}

func TestCompactOddLines(t *testing.T) {
	c := testCorpus(t)
	odd := [][]byte{
		[]byte(`{"not":"an event"}`),
		[]byte(`{ "spaced" : true }`),
		append([]byte(nil), c.lines[5]...),
		bytes.Replace(append([]byte(nil), c.lines[6]...), []byte(`"sig":"`), []byte(`"sig":"x`), 1),
		[]byte(`{"actor":"a","event_id":"evt_000000000000000000000000","prev_event_hash":"EVT_X","type":"T"}`),
	}
	var codec radiosync.Codec
	blob, err := codec.Encode(odd, radiosync.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := radiosync.ParseBatchHeader(blob)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codec.Decode(h, nil, resolverFirst(c, 10))
	if err != nil {
		t.Fatal(err)
	}
	for i := range odd {
		if !bytes.Equal(got[i], odd[i]) {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], odd[i])
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	c := testCorpus(f)
	var codec radiosync.Codec
	for _, n := range []int{1, 3, 10} {
		blob, err := codec.Encode(c.lines[100:100+n], radiosync.EncodeOptions{Holds: holdsFirst(c, 100), KeyOf: keyOfFirst(c, 100)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob)
	}
	blob, _ := codec.Encode(c.lines[100:101], radiosync.EncodeOptions{Dict: radiosync.BuildDict(c.events, cutAt(c, 50))})
	f.Add(blob)
	f.Add([]byte{0x02})
	f.Add([]byte{0x82, 0x01, 1, 2, 3, 4, 5, 0, 0, 0, 0})
	resolve := resolverFirst(c, 200)
	f.Fuzz(func(t *testing.T, blob []byte) {
		var codec radiosync.Codec
		h, err := radiosync.ParseBatchHeader(blob)
		if err != nil {
			if !errors.Is(err, radiosync.ErrBadBatch) {
				t.Fatalf("error %v does not match ErrBadBatch", err)
			}
			return
		}
		lines, err := codec.Decode(h, nil, resolve)
		if err != nil {
			if !errors.Is(err, radiosync.ErrBadBatch) {
				t.Fatalf("error %v does not match ErrBadBatch", err)
			}
			return
		}
		if len(lines) > radiosync.MaxBatchEvents {
			t.Fatalf("%d lines", len(lines))
		}
		// Whatever decodes re-encodes to lines that decode the same.
		again, err := codec.Encode(lines, radiosync.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h2, err := radiosync.ParseBatchHeader(again)
		if err != nil {
			t.Fatal(err)
		}
		got, err := codec.Decode(h2, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if !bytes.Equal(got[i], lines[i]) {
				t.Fatalf("line %d changed on a round trip", i)
			}
		}
	})
}
