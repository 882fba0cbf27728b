package store_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// Replay a failing run with
//
//	go test ./internal/store -run TestSyncProperty -sync.seed=N
//
// (or BACKPACK_SYNC_SEED=N); -sync.long runs more and bigger scenarios.
var (
	syncSeed = flag.Uint64("sync.seed", 0, "seed of TestSyncProperty (0: pick one; env BACKPACK_SYNC_SEED)")
	syncLong = flag.Bool("sync.long", false, "TestSyncProperty: more seeds, more replicas, more steps")
)

// syncSeeds returns the seeds to run: the one asked for, else a few fresh
// ones.
func syncSeeds(t *testing.T, n int) []uint64 {
	t.Helper()
	if *syncSeed != 0 {
		return []uint64{*syncSeed}
	}
	if s := os.Getenv("BACKPACK_SYNC_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BACKPACK_SYNC_SEED: %v", err)
		}
		return []uint64{v}
	}
	first := uint64(time.Now().UnixNano())
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = first + uint64(i)*0x9e3779b97f4a7c15
		if seeds[i] == 0 {
			seeds[i] = 1
		}
	}
	return seeds
}

// syncReplica is one copy of the backpack as one device holds it: its own
// directory, its own device-state directory (pending and quarantine live
// there), its own actor label and clock. All replicas share the device key
// file, so every one of them trusts every other's signatures.
type syncReplica struct {
	name  string
	dir   string
	state string // XDG_STATE_HOME of this device
	actor string
	now   func() time.Time
	key   string
	bp    *store.Backpack
	seq   int
	stats *syncStats
}

// syncStats counts what a scenario exercised, shown with -v.
type syncStats struct {
	ingests, applied, duplicates, pending, rewrites int
}

// use makes the replica's device-state directory the current one: the
// store looks it up at each call.
func (r *syncReplica) use(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", r.state)
}

func (r *syncReplica) open(t *testing.T) {
	t.Helper()
	r.use(t)
	bp, err := store.Open(context.Background(), r.dir, store.Options{KeyFile: r.key, Actor: r.actor, Now: r.now})
	if err != nil {
		t.Fatalf("%s: open: %v", r.name, err)
	}
	r.bp = bp
}

func (r *syncReplica) close(t *testing.T) {
	t.Helper()
	if r.bp == nil {
		return
	}
	r.use(t)
	if err := r.bp.Close(); err != nil {
		t.Fatalf("%s: close: %v", r.name, err)
	}
	r.bp = nil
}

func (r *syncReplica) log(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, store.EventsPath))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ingest delivers lines and checks that nothing was refused: every line
// comes from some replica's log, so each is valid, trusted and unforked.
func (r *syncReplica) ingest(t *testing.T, lines [][]byte, src string) *store.IngestResult {
	t.Helper()
	r.use(t)
	res, err := r.bp.Ingest(context.Background(), lines, src)
	if err != nil {
		t.Fatalf("%s: ingest from %s: %v", r.name, src, err)
	}
	return r.checkIngest(t, res, src)
}

// checkIngest checks what an ingest of lines from some replica's log did
// (see ingest) and counts it.
func (r *syncReplica) checkIngest(t *testing.T, res *store.IngestResult, src string) *store.IngestResult {
	t.Helper()
	if len(res.Quarantined)+len(res.Rejected)+len(res.Forks) > 0 {
		t.Fatalf("%s: ingest from %s: quarantined %v rejected %v forks %v", r.name, src, res.Quarantined, res.Rejected, res.Forks)
	}
	if got := len(res.Applied) + res.Duplicates + len(res.Pending); got < res.Received {
		// Pending events re-examined may be applied too, so applied +
		// duplicates + pending can exceed what arrived, never fall short.
		t.Fatalf("%s: ingest from %s: %d lines, %d applied, %d duplicates, %d pending", r.name, src, res.Received, len(res.Applied), res.Duplicates, len(res.Pending))
	}
	if s := r.stats; s != nil {
		s.ingests++
		s.applied += len(res.Applied)
		s.duplicates += res.Duplicates
		s.pending += len(res.Pending)
		if res.Rewrote {
			s.rewrites++
		}
	}
	return res
}

// skewedClock starts at base+skew and advances by small steps; some
// steps are zero (equal timestamps), a few go back (a clock corrected by
// hand), some land on whole seconds (the reference then omits the
// fraction, a timestamp spelling that sorts differently).
func skewedClock(rng *rand.Rand, skew time.Duration) func() time.Time {
	t := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC).Add(skew)
	return func() time.Time {
		switch x := rng.IntN(20); {
		case x < 3: // same timestamp as the last event
		case x == 3:
			t = t.Add(-2 * time.Millisecond)
		case x == 4:
			t = t.Truncate(time.Second).Add(time.Second)
		default:
			t = t.Add(time.Duration(1+rng.IntN(3000)) * time.Microsecond)
		}
		return t
	}
}

type syncSizes struct {
	minReplicas, maxReplicas int
	steps                    int
}

func TestSyncProperty(t *testing.T) {
	sizes, seeds := syncSizes{3, 5, 60}, syncSeeds(t, 3)
	if *syncLong {
		sizes, seeds = syncSizes{3, 6, 250}, syncSeeds(t, 8)
	}
	// Small logs keep a base snapshot too, so that merges replay from it
	// when they can (and from the start when they reorder before it).
	defer store.SetMinBaseBytes(2 << 10)()
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay: go test ./internal/store -run 'TestSyncProperty' -sync.seed=%d", seed)
				}
			})
			syncScenario(t, seed, sizes)
		})
	}
}

// syncScenario runs one seeded scenario: replicas append, exchange log
// lines and bundles in random order and random pieces, then exchange
// everything; they must end byte-identical. Then the final event set is
// merged again into fresh copies in other orders and groupings.
func syncScenario(t *testing.T, seed uint64, sizes syncSizes) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	baseReplays, tailRewrites := store.BaseReplays(), store.TailRewrites()
	origin, res := newBackpack(t)
	base := filepath.Dir(origin)
	pristine := filepath.Join(base, "pristine")
	copyDir(t, origin, pristine)

	n := sizes.minReplicas + rng.IntN(sizes.maxReplicas-sizes.minReplicas+1)
	skews := []time.Duration{0, 0, -3 * time.Second, 2 * time.Second, 500 * time.Microsecond, -time.Hour}
	reps := make([]*syncReplica, n)
	stats := &syncStats{}
	for i := range reps {
		r := &syncReplica{
			name:  fmt.Sprintf("replica %d", i),
			dir:   filepath.Join(base, fmt.Sprintf("r%d", i)),
			state: filepath.Join(base, fmt.Sprintf("state%d", i)),
			actor: fmt.Sprintf("device_%d", i),
			now:   skewedClock(rng, skews[rng.IntN(len(skews))]),
			key:   res.KeyFile,
			stats: stats,
		}
		copyDir(t, origin, r.dir)
		r.open(t)
		reps[i] = r
	}
	defer func() {
		for _, r := range reps {
			r.close(t)
		}
	}()

	// Frontiers each replica had at some point: a sender may compute a
	// delta against an old one (a stale report of what the peer holds).
	var seen []bplog.Frontier
	subjects := []string{"well_1", "well_2", "gate", "pump"}
	for step := range sizes.steps {
		switch op := rng.IntN(10); {
		case op < 4:
			r := reps[rng.IntN(n)]
			k := 1 + rng.IntN(3)
			bodies := make([]canon.Value, k)
			for i := range bodies {
				r.seq++
				bodies[i] = observation(subjects[rng.IntN(len(subjects))], "level", canon.IntValue(int64(r.seq)), float64(1+rng.IntN(9))/10)
			}
			r.use(t)
			if _, err := r.bp.AppendBatch(bodies); err != nil {
				t.Fatalf("step %d: %s: append: %v", step, r.name, err)
			}
		case op < 6:
			from, to := pickTwo(rng, reps)
			syncSendLines(t, rng, from, to, fmt.Sprintf("step %d lines %s", step, from.name))
		case op < 7:
			from, to := pickTwo(rng, reps)
			syncMergeLog(t, from, to, fmt.Sprintf("step %d merge %s", step, from.name))
		case op < 9:
			from, to := pickTwo(rng, reps)
			seen = append(seen, to.bp.Frontier())
			var basis bplog.Frontier
			switch rng.IntN(4) {
			case 0: // a full export
			case 1:
				basis = seen[rng.IntN(len(seen))]
			default:
				basis = to.bp.Frontier()
			}
			syncSendBundles(t, rng, from, to, basis, fmt.Sprintf("step %d bundle %s", step, from.name))
		default:
			r := reps[rng.IntN(n)]
			r.close(t)
			r.open(t)
		}
	}

	// The final exchange: every replica receives every log, shuffled and
	// with duplicates, then once more as a bundle against its frontier.
	var all [][]byte
	for _, r := range reps {
		all = append(all, splitLines(r.log(t))...)
	}
	for _, r := range reps {
		lines := slices.Clone(all)
		rng.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
		r.ingest(t, lines, "final exchange")
	}
	for _, r := range reps {
		syncSendBundles(t, rng, reps[rng.IntN(n)], r, r.bp.Frontier(), "final bundle")
	}

	want := reps[0].log(t)
	wantFrontier := reps[0].bp.Frontier().Encode()
	wantHash := stateHash(t, reps[0].bp)
	for _, r := range reps {
		if got := r.log(t); !bytes.Equal(got, want) {
			t.Fatalf("%s: events.ndjson differs from %s's after the final exchange:\n%s\nvs\n%s", r.name, reps[0].name, got, want)
		}
		if got := stateHash(t, r.bp); got != wantHash {
			t.Fatalf("%s: state hash %s, %s has %s", r.name, got, reps[0].name, wantHash)
		}
		if got := r.bp.Frontier().Encode(); !bytes.Equal(got, wantFrontier) {
			t.Fatalf("%s: frontier %s, want %s", r.name, got, wantFrontier)
		}
		r.use(t)
		if p, err := r.bp.Held("pending"); err != nil || len(p) != 0 {
			t.Fatalf("%s: pending after the final exchange: %v %v", r.name, p, err)
		}
	}
	for _, r := range reps {
		r.close(t)
		if got := replayHash(t, r.dir); got != wantHash {
			t.Fatalf("%s: replay gives state hash %s, the store said %s", r.name, got, wantHash)
		}
		rep := mustVerify(t, r.dir)
		if rep.Warnings != 0 {
			t.Fatalf("%s: verify: %d warnings: %v", r.name, rep.Warnings, rep.Findings)
		}
		r.open(t)
	}

	events := splitLines(want)
	t.Logf("%d replicas, %d events; %d ingests: %d applied, %d duplicates, %d pending, %d log rewrites (%d replayed from the snapshot, %d kept a clean prefix unread)",
		n, len(events), stats.ingests, stats.applied, stats.duplicates, stats.pending, stats.rewrites, store.BaseReplays()-baseReplays, store.TailRewrites()-tailRewrites)
	syncAlgebra(t, rng, pristine, res.KeyFile, events, want)
}

func pickTwo(rng *rand.Rand, reps []*syncReplica) (from, to *syncReplica) {
	i := rng.IntN(len(reps))
	j := rng.IntN(len(reps) - 1)
	if j >= i {
		j++
	}
	return reps[i], reps[j]
}

func splitLines(data []byte) [][]byte {
	var out [][]byte
	for l := range bytes.SplitSeq(data, []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// syncSendLines delivers a random piece of from's log to to: a subset
// (often missing predecessors, which then wait as pending), shuffled, with
// some lines twice, sometimes in several deliveries.
func syncSendLines(t *testing.T, rng *rand.Rand, from, to *syncReplica, src string) {
	t.Helper()
	lines := splitLines(from.log(t))
	keep := rng.Float64()
	var pick [][]byte
	for _, l := range lines {
		if rng.Float64() < keep {
			pick = append(pick, l)
		}
		if rng.IntN(8) == 0 {
			pick = append(pick, l) // a duplicate
		}
	}
	rng.Shuffle(len(pick), func(i, j int) { pick[i], pick[j] = pick[j], pick[i] })
	for _, part := range randomSplit(rng, pick) {
		to.ingest(t, part, src)
	}
}

// syncMergeLog merges from's whole log into to as `backpack merge` does:
// to is opened keeping its log (KeepLog, DeferState) and from's bytes are
// compared with it (PrepareLog, IngestPrepared).
func syncMergeLog(t *testing.T, from, to *syncReplica, src string) {
	t.Helper()
	data := from.log(t)
	to.close(t)
	to.use(t)
	bp, err := store.Open(context.Background(), to.dir, store.Options{KeyFile: to.key, Actor: to.actor, Now: to.now, KeepLog: true, DeferState: true})
	if err != nil {
		t.Fatalf("%s: open: %v", to.name, err)
	}
	p, err := store.PrepareLog(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bp.IngestPrepared(context.Background(), p, src)
	if err == nil {
		err = bp.Close()
	}
	if err != nil {
		t.Fatalf("%s: merge from %s: %v", to.name, src, err)
	}
	to.checkIngest(t, res, src)
	to.open(t)
}

// randomSplit cuts lines into 1-3 contiguous parts.
func randomSplit(rng *rand.Rand, lines [][]byte) [][][]byte {
	parts := 1 + rng.IntN(3)
	var out [][][]byte
	for p := parts; p > 1 && len(lines) > 0; p-- {
		k := rng.IntN(len(lines) + 1)
		out = append(out, lines[:k])
		lines = lines[k:]
	}
	return append(out, lines)
}

// syncSendBundles exports from's delta against basis, cuts it into
// bundles, and delivers them to to out of order, some twice, some not at
// all. Each bundle goes through the bytes: Encode, Decode, the header
// checks and signature an import makes, then Ingest.
func syncSendBundles(t *testing.T, rng *rand.Rand, from, to *syncReplica, basis bplog.Frontier, src string) {
	t.Helper()
	ctx := context.Background()
	delta, err := from.bp.Delta(ctx, basis)
	if err != nil {
		t.Fatalf("%s: delta: %v", from.name, err)
	}
	// What the delta must hold: every event of from's log that a holder
	// of basis lacks.
	if basis != nil && len(basis) > 0 && frontierHeldBy(from, basis) {
		if err := checkDelta(splitLines(from.log(t)), basis, delta); err != nil {
			t.Fatalf("%s: delta against %s: %v", from.name, basis.Encode(), err)
		}
	}
	key, err := from.bp.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	sender := from.bp.Frontier()
	full := src == "final bundle"
	parts := randomSplit(rng, delta)
	if full {
		parts = [][][]byte{delta}
	}
	var files [][]byte
	for _, part := range parts {
		var buf bytes.Buffer
		h := bundles.Header{UID: from.bp.UID(), Sender: sender, Basis: basis, CreatedAt: "2026-03-01T09:00:00+00:00"}
		if _, err := bundles.Encode(&buf, h, part, key.Key, bundles.EncodeOptions{}); err != nil {
			t.Fatalf("%s: encode: %v", from.name, err)
		}
		files = append(files, buf.Bytes())
		if !full && rng.IntN(6) == 0 {
			files = append(files, buf.Bytes()) // delivered twice
		}
	}
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	if !full && len(files) > 1 && rng.IntN(4) == 0 {
		files = files[1:] // one lost on the way
	}
	for _, f := range files {
		bd, err := bundles.Decode(bytes.NewReader(f), bundles.Limits{})
		if err != nil {
			t.Fatalf("%s: decode a bundle from %s: %v", to.name, from.name, err)
		}
		if err := bd.VerifySignature(to.bp.Registry()); err != nil {
			t.Fatalf("%s: bundle signature: %v", to.name, err)
		}
		if bd.Header.UID != to.bp.UID() || !bytes.Equal(bd.Header.Sender.Encode(), sender.Encode()) || !bytes.Equal(bd.Header.Basis.Encode(), basisOrEmpty(basis).Encode()) {
			t.Fatalf("%s: header round trip: %+v", to.name, bd.Header)
		}
		to.ingest(t, bd.Events, src)
	}
}

func basisOrEmpty(f bplog.Frontier) bplog.Frontier {
	if f == nil {
		return bplog.Frontier{}
	}
	return f
}

// frontierHeldBy reports whether from's log holds every head basis names
// (else the delta may resend an actor's whole chain, which is allowed).
func frontierHeldBy(from *syncReplica, basis bplog.Frontier) bool {
	mine := from.bp.Frontier()
	for a, h := range basis {
		if m, ok := mine[a]; !ok || m.Count < h.Count {
			return false
		}
	}
	return true
}

// checkDelta checks that delta is exactly log's events not covered by
// basis, in log order: per actor, the events after its first Count ones.
// Call it only when the log holds basis (no forks here, so holding the
// count means holding the head).
func checkDelta(log [][]byte, basis bplog.Frontier, delta [][]byte) error {
	count := map[string]int64{}
	var want [][]byte
	for _, l := range log {
		e, err := bplog.Parse(l)
		if err != nil {
			return err
		}
		count[e.Actor]++
		if count[e.Actor] > basis[e.Actor].Count {
			want = append(want, l)
		}
	}
	if len(want) != len(delta) {
		return fmt.Errorf("%d events, want %d", len(delta), len(want))
	}
	for i := range want {
		if !bytes.Equal(want[i], delta[i]) {
			return fmt.Errorf("event %d is %s, want %s", i, delta[i], want[i])
		}
	}
	return nil
}

// syncAlgebra merges the final event set into fresh copies of the
// pristine backpack in other ways, each of which must give want byte for
// byte:
//   - all at once, shuffled;
//   - commutative: X then Y equals Y then X (X, Y an arbitrary split, so
//     the first part leaves events pending);
//   - associative: replicas holding X, Y and Z (each closed under
//     predecessors), merged as (X+Y)+Z and as X+(Y+Z);
//   - idempotent: merging the set again, or a replica into itself,
//     changes nothing.
func syncAlgebra(t *testing.T, rng *rand.Rand, pristine, key string, events [][]byte, want []byte) {
	t.Helper()
	base := filepath.Dir(pristine)
	fresh := func(name string) *syncReplica {
		r := &syncReplica{name: name, dir: filepath.Join(base, name), state: filepath.Join(base, "state-"+name), key: key, now: clock()}
		copyDir(t, pristine, r.dir)
		r.open(t)
		t.Cleanup(func() { r.close(t) })
		return r
	}
	expect := func(r *syncReplica, what string) {
		t.Helper()
		if got := r.log(t); !bytes.Equal(got, want) {
			t.Fatalf("%s: events.ndjson differs from the replicas':\n%s\nvs\n%s", what, got, want)
		}
	}
	shuffled := func() [][]byte {
		s := slices.Clone(events)
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return s
	}

	once := fresh("once")
	once.ingest(t, shuffled(), "all")
	expect(once, "all at once")

	s := shuffled()
	k := rng.IntN(len(s) + 1)
	x, y := s[:k], s[k:]
	xy, yx := fresh("xy"), fresh("yx")
	xy.ingest(t, x, "x")
	xy.ingest(t, y, "y")
	yx.ingest(t, y, "y")
	yx.ingest(t, x, "x")
	expect(xy, "X then Y")
	expect(yx, "Y then X")

	parts := closedParts(t, rng, events)
	holders := make([]*syncReplica, 6)
	for i := range holders {
		holders[i] = fresh(fmt.Sprintf("part%d", i))
		holders[i].ingest(t, parts[i%3], fmt.Sprintf("part %d", i%3))
	}
	// Left: (X+Y)+Z in holders[0]. Right: Y+Z in holders[4], then into
	// holders[3] (which holds X).
	holders[0].ingest(t, splitLines(holders[1].log(t)), "y")
	holders[0].ingest(t, splitLines(holders[2].log(t)), "z")
	holders[4].ingest(t, splitLines(holders[5].log(t)), "z")
	holders[3].ingest(t, splitLines(holders[4].log(t)), "y+z")
	if l, r := holders[0].log(t), holders[3].log(t); !bytes.Equal(l, r) {
		t.Fatalf("(X+Y)+Z differs from X+(Y+Z):\n%s\nvs\n%s", l, r)
	}
	if len(parts[0])+len(parts[1])+len(parts[2]) >= len(events) {
		// The parts may leave some events out; when they cover all,
		// the result is the replicas' log.
		union := map[string]bool{}
		for _, p := range parts {
			for _, l := range p {
				union[string(l)] = true
			}
		}
		if len(union) == len(events) {
			expect(holders[0], "(X+Y)+Z")
		}
	}

	before := once.log(t)
	hash := stateHash(t, once.bp)
	if r := once.ingest(t, shuffled(), "all again"); len(r.Applied) != 0 || r.Rewrote {
		t.Fatalf("merging the set again: applied %v, rewrote %v", r.Applied, r.Rewrote)
	}
	once.ingest(t, splitLines(once.log(t)), "itself")
	if got := once.log(t); !bytes.Equal(got, before) || stateHash(t, once.bp) != hash {
		t.Fatalf("merging again changed the backpack")
	}
}

// closedParts returns three random subsets of events, each closed under
// predecessors (an event's predecessor is in every part the event is in),
// so a replica holding one has nothing pending.
func closedParts(t *testing.T, rng *rand.Rand, events [][]byte) [3][][]byte {
	t.Helper()
	byID := map[string]*bplog.Event{}
	for _, l := range events {
		e, err := bplog.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		byID[e.ID] = e
	}
	var out [3][][]byte
	for p := range out {
		in := map[string]bool{}
		for _, l := range events {
			if rng.IntN(3) != 0 {
				continue
			}
			e, _ := bplog.Parse(l)
			for e != nil && !in[e.ID] {
				in[e.ID] = true
				if !e.HasPrev {
					break
				}
				e = byID[e.Prev]
			}
		}
		for _, l := range events { // in log order
			e, _ := bplog.Parse(l)
			if in[e.ID] {
				out[p] = append(out[p], l)
			}
		}
	}
	return out
}
