package reducer_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

var (
	propSeed  = flag.Uint64("reducer.seed", 0, "seed for the property tests (0: a fresh one, printed)")
	propCases = flag.Int("reducer.cases", 300, "number of random logs per property test")
)

// seedFor returns the seed of a property test and logs it, so a failure
// can be replayed with -reducer.seed.
func seedFor(t *testing.T) uint64 {
	t.Helper()
	seed := *propSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -reducer.seed=%d)", seed, seed)
	return seed
}

// oddLog generates a log of parsed entries with the odd values the
// reference's quirks depend on: ints, floats and bools that compare equal,
// falsy ids and actors, namespaces with whitespace and case, confidences as
// strings, non-finite numbers, malformed payloads and non-object entries.
type oddLog struct {
	rng  *rand.Rand
	keys [][2]string // subject, predicate as JSON texts
	vals []string    // values as JSON texts
}

var (
	oddSubjects = []string{`"s"`, `"d"`, `"a:b"`, `"door"`, `1`, `1.0`, `true`, `""`, `0`, `null`, `[1,"x"]`, `{"k":1}`, `-0.0`, `["it's"]`, `"é"`, `1e16`, `123456789012345678901234567890`}
	oddPreds    = []string{`"p"`, `"q"`, `"b:c"`, `"state"`, `false`, `2`, `["a",1.5]`}
	plainVals   = []string{`"open"`, `"closed"`, `1`, `1.0`, `true`, `0`, `false`, `0.0`, `-0.0`, `null`, `"1"`, `[1,2]`, `[1.0,2]`, `{"k":[1,2]}`, `{"k":[1.0,2]}`, `[]`, `{}`, `""`, `1e16`, `123456789012345678901234567890`}
	oddVals     = []string{`NaN`, `[NaN]`, `{"a":NaN}`, `Infinity`, `[1,[NaN]]`, `-Infinity`}
	confs       = []string{`0.1`, `0.3`, `0.49`, `0.5`, `0.51`, `0.6`, `0.9`, `0.95`, `1`, `0`, `1.0`, `"0.7"`, `" 0.25 "`, `"1_0"`, `"1__0"`, `"inf"`, `"-Infinity"`, `"nan"`, `"1e-1"`, `true`, `false`, `1180591620717411303424`, `"\u0661.5"`, `"abc"`, `[0.9]`, `{"a":1}`, `NaN`, `Infinity`, `"\u00a00.8\u2003"`, `"\u001c0.8"`, `"1e400"`, `".5"`, `null`, `-0.5`}
	hugeConfs   = []string{`1` + strings.Repeat("0", 400)}
	types       = []string{`"OBSERVATION"`, `"OBSERVATION"`, `"OBSERVATION"`, `"OBSERVATION"`, `"ASSERTION"`, `"ASSERTION"`, `"ATTESTATION"`, `"ATTESTATION"`, `"RETRACTION"`, `"REDUCER_EPOCH"`, `"GENESIS"`, `"observation"`, `null`, `5`}
	namespaces  = []string{`"local"`, `"canonical"`, `" CANONICAL "`, `"contested"`, `"\u2003archived\u001c"`, `"ARCH\u0130VED"`, `"conte\u017fted"`, `1`, `null`, `"other"`, `""`, `true`}
	actors      = []string{`"alice"`, `"bob"`, `"carol"`, `""`, `null`, `1`, `true`, `["x",2]`, `0.5`}
	timestamps  = []string{`"2026-01-01T00:00:00Z"`, `""`, `null`, `0`, `1.5`, `true`, `"t2"`}
	ids         = []string{`""`, `0`, `false`, `7`, `["x"]`, `{"a":1}`, `"e1"`, `1.0`, `NaN`}
)

func newOddLog(rng *rand.Rand) *oddLog {
	g := &oddLog{rng: rng}
	for range 1 + rng.IntN(5) {
		g.keys = append(g.keys, [2]string{g.pick(oddSubjects), g.pick(oddPreds)})
	}
	for range 1 + rng.IntN(4) {
		if rng.IntN(10) == 0 {
			g.vals = append(g.vals, g.pick(oddVals))
		} else {
			g.vals = append(g.vals, g.pick(plainVals))
		}
	}
	return g
}

func (g *oddLog) pick(list []string) string { return list[g.rng.IntN(len(list))] }

func (g *oddLog) chance(percent int) bool { return g.rng.IntN(100) < percent }

func (g *oddLog) payload(typ string) string {
	var f []string
	k := g.keys[g.rng.IntN(len(g.keys))]
	if g.chance(94) {
		f = append(f, `"subject":`+k[0])
	}
	if g.chance(94) {
		f = append(f, `"predicate":`+k[1])
	}
	if g.chance(90) {
		f = append(f, `"value":`+g.vals[g.rng.IntN(len(g.vals))])
	}
	if g.chance(70) {
		c := g.pick(confs[:8])
		switch {
		case g.chance(1):
			c = g.pick(hugeConfs)
		case g.chance(35):
			c = g.pick(confs)
		}
		f = append(f, `"confidence":`+c)
	}
	if g.chance(25) {
		f = append(f, `"timestamp":`+g.pick(timestamps))
	}
	if g.chance(25) {
		f = append(f, `"timestamp_utc":`+g.pick(timestamps))
	}
	if g.chance(30) {
		f = append(f, `"actor_key_id":`+g.pick([]string{`"k1"`, `""`, `null`, `5`, `["k"]`}))
	}
	if g.chance(30) {
		f = append(f, `"target_event_id":`+g.pick([]string{`"t1"`, `""`, `null`, `0`, `{"t":1}`}))
	}
	if typ == `"REDUCER_EPOCH"` || g.chance(5) {
		for _, name := range []string{"epoch_id", "reducer_hash", "effective_from_event_id", "ontology_versions"} {
			if g.chance(70) {
				f = append(f, fmt.Sprintf("%q:%s", name, g.pick(plainVals)))
			}
		}
	}
	switch r := g.rng.IntN(100); {
	case r < 3:
		return g.pick([]string{`null`, `{}`, `[]`, `""`, `0`, `false`})
	case r < 4:
		return g.pick([]string{`"x"`, `1`, `[1]`, `true`, `NaN`}) // the reference raises
	}
	return "{" + strings.Join(f, ",") + "}"
}

func (g *oddLog) line(i int) string {
	switch r := g.rng.IntN(100); {
	case r < 3:
		return g.pick([]string{`[1,2]`, `"str"`, `5`, `null`, `true`})
	}
	var f []string
	typ := g.pick(types)
	f = append(f, `"type":`+typ)
	switch r := g.rng.IntN(100); {
	case r < 80:
		f = append(f, fmt.Sprintf(`"event_id":"e%d"`, i))
	case r < 88:
		f = append(f, `"id":`+g.pick(ids))
	case r < 95:
		f = append(f, `"event_id":`+g.pick(ids))
	}
	if g.chance(90) {
		a := g.pick(actors[:3])
		if g.chance(20) {
			a = g.pick(actors)
		}
		f = append(f, `"actor":`+a)
	}
	if g.chance(70) {
		f = append(f, `"namespace":`+g.pick(namespaces))
	}
	if g.chance(95) {
		f = append(f, `"payload":`+g.payload(typ))
	}
	return "{" + strings.Join(f, ",") + "}"
}

func (g *oddLog) events(tb testing.TB, n int) []canon.Value {
	tb.Helper()
	out := make([]canon.Value, 0, n)
	for i := range n {
		out = append(out, mustParse(tb, g.line(i)))
	}
	return out
}

// outcome is what a State reports after an event: its hash, or the kind
// of failure.
func outcome(s *reducer.State, applyErr error) string {
	if applyErr != nil {
		var ae *reducer.ApplyError
		if !errors.As(applyErr, &ae) {
			return "bad apply error " + applyErr.Error()
		}
		return "!apply"
	}
	h, err := s.StateHash()
	if err != nil {
		if !errors.Is(err, canon.ErrNonFinite) {
			return "bad hash error " + err.Error()
		}
		return "!hash"
	}
	return h
}

// fullReplay returns the outcome of replaying events on a new State.
func fullReplay(events []canon.Value) string {
	s := reducer.New()
	var err error
	for _, ev := range events {
		if err = s.Apply(ev); err != nil {
			break
		}
	}
	return outcome(s, err)
}

// TestIncrementalHashMatchesReplay checks the incremental hash after every
// event against a fresh replay of the prefix, and a clone taken halfway
// against both; with marks far apart (the default) and close together, so
// that hashing resumes from marks all over the document.
func TestIncrementalHashMatchesReplay(t *testing.T) {
	for _, every := range []int{32 << 10, 1, 100} {
		t.Run(fmt.Sprintf("marks every %d bytes", every), func(t *testing.T) {
			defer reducer.SetMarkEvery(every)()
			testIncremental(t)
		})
	}
}

func testIncremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 1))
	for c := range *propCases {
		events := newOddLog(rng).events(t, 1+rng.IntN(40))
		s := reducer.New()
		var clone *reducer.State
		cut := rng.IntN(len(events))
		processed := 0
		for i, ev := range events {
			processed = i + 1
			got := outcome(s, s.Apply(ev))
			if want := fullReplay(events[:i+1]); got != want {
				t.Fatalf("case %d event %d: incremental %s, replay %s\nlog %v", c, i, got, want, events[:i+1])
			}
			if i == cut {
				clone = s.Clone()
			}
			if clone != nil && i > cut {
				// The clone sees only the events up to the cut plus
				// every other later one.
				if i%2 == 0 {
					clone.Apply(ev)
				}
			}
			if strings.HasPrefix(got, "!apply") {
				break
			}
		}
		if clone != nil {
			var prefix []canon.Value
			for i, ev := range events[:processed] {
				if i <= cut || i%2 == 0 {
					prefix = append(prefix, ev)
				}
			}
			if got, want := outcome(clone, clone.Err()), fullReplay(prefix); got != want {
				t.Fatalf("case %d: clone %s, replay %s", c, got, want)
			}
		}
	}
}

// TestRestoreMatchesReplay cuts a log at a random point, persists the
// state as canonical JSON (preimage and evidence), restores it, applies the
// rest and compares with a full replay.
func TestRestoreMatchesReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 2))
	restored := 0
	for c := range *propCases {
		events := newOddLog(rng).events(t, 1+rng.IntN(40))
		cut := rng.IntN(len(events) + 1)
		s := reducer.New()
		var err error
		for _, ev := range events[:cut] {
			if err = s.Apply(ev); err != nil {
				break
			}
		}
		if err != nil {
			continue
		}
		pre, err := s.PreimageValue()
		if err != nil {
			continue // no preimage for a state the reference cannot hash
		}
		evidence := s.Evidence()
		// Persist through canonical JSON when the evidence allows it
		// (non-finite confidences only exist as values).
		if text, err := canon.Encode(evidence); err == nil {
			evidence = mustParse(t, string(text))
			text, err := canon.Encode(pre)
			if err != nil {
				t.Fatal(err)
			}
			pre = mustParse(t, string(text))
		}
		r, err := reducer.Restore(pre, evidence)
		if err != nil {
			t.Fatalf("case %d: Restore: %v", c, err)
		}
		restored++
		for i, ev := range events[cut:] {
			got := outcome(r, r.Apply(ev))
			if want := fullReplay(events[:cut+i+1]); got != want {
				t.Fatalf("case %d: cut %d, event %d: restored %s, replay %s", c, cut, cut+i, got, want)
			}
			if strings.HasPrefix(got, "!") {
				break
			}
		}
	}
	t.Logf("%d of %d logs restored", restored, *propCases)
}

// TestBinaryMatchesReplay round-trips the state through its binary form at
// a random cut, checks that the encoding is deterministic, and continues
// on the decoded state.
func TestBinaryMatchesReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 3))
	for c := range *propCases {
		events := newOddLog(rng).events(t, 1+rng.IntN(40))
		cut := rng.IntN(len(events) + 1)
		s := reducer.New()
		var err error
		for _, ev := range events[:cut] {
			if err = s.Apply(ev); err != nil {
				break
			}
		}
		if err != nil {
			if _, merr := s.MarshalBinary(); merr == nil {
				t.Fatalf("case %d: MarshalBinary of a stopped state succeeded", c)
			}
			continue
		}
		if rng.IntN(2) == 0 {
			s.StateHash() // with and without caches
		}
		bin, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var d reducer.State
		if err := d.UnmarshalBinary(bin); err != nil {
			t.Fatalf("case %d: UnmarshalBinary: %v", c, err)
		}
		again, err := d.MarshalBinary()
		if err != nil || !bytes.Equal(again, bin) {
			t.Fatalf("case %d: re-encoding differs (%v)", c, err)
		}
		if got, want := outcome(&d, nil), outcome(s, nil); got != want {
			t.Fatalf("case %d: decoded %s, original %s", c, got, want)
		}
		for i, ev := range events[cut:] {
			got := outcome(&d, d.Apply(ev))
			if want := fullReplay(events[:cut+i+1]); got != want {
				t.Fatalf("case %d: cut %d, event %d: decoded %s, replay %s", c, cut, cut+i, got, want)
			}
			if strings.HasPrefix(got, "!apply") {
				break
			}
		}
	}
}

// TestCloneConcurrent hashes and reads a clone in another goroutine while
// the original keeps applying events; under -race it checks that the two
// share only data that neither writes.
func TestCloneConcurrent(t *testing.T) {
	events := realisticLog(t, 6000, 2)
	s := replay(t, events[:3000])
	mustHash(t, s)
	c := s.Clone()
	want := mustHash(t, replay(t, events[:3000]))
	done := make(chan string)
	go func() {
		h, err := c.StateHash()
		for _, ns := range []reducer.Namespace{reducer.Archived, reducer.Canonical, reducer.Contested, reducer.Local} {
			for range c.Entries(ns) {
			}
		}
		c.Evidence()
		c.Apply(events[3000])
		c.StateHash()
		if err != nil {
			h = err.Error()
		}
		done <- h
	}()
	for _, ev := range events[3000:] {
		s.Apply(ev)
		if _, err := s.StateHash(); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-done; got != want {
		t.Errorf("clone hash %s, want %s", got, want)
	}
	if got, want := mustHash(t, s), mustHash(t, replay(t, events)); got != want {
		t.Errorf("original hash %s, want %s", got, want)
	}
}
