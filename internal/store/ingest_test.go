package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func logLinesOf(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, l := range bytes.Split([]byte(mustRead(t, filepath.Join(dir, store.EventsPath))), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// replicas returns two copies of one backpack that share the device key
// file (as two sessions of one device would), and that key file.
func replicas(t *testing.T) (a, b, key string) {
	t.Helper()
	dir, res := newBackpack(t)
	b = filepath.Join(filepath.Dir(dir), "replica")
	copyDir(t, dir, b)
	return dir, b, res.KeyFile
}

func appendN(t *testing.T, dir, key, actor string, n int, now func() time.Time) {
	t.Helper()
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, Actor: actor, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	for i := range n {
		if _, err := bp.Append(observation(actor, "reading", canon.IntValue(int64(i)), 0.7)); err != nil {
			t.Fatal(err)
		}
	}
}

func ingest(t *testing.T, dir, key string, lines [][]byte, src string) *store.IngestResult {
	t.Helper()
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	res, err := bp.Ingest(context.Background(), lines, src)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestIngestConverges(t *testing.T) {
	a, b, key := replicas(t)
	ca, cb := clock(), clock()
	// Interleaved clocks: b's events fall between a's.
	cb()
	appendN(t, a, key, "north", 5, ca)
	appendN(t, b, key, "south", 4, cb)
	ra := ingest(t, a, key, logLinesOf(t, b), "replica b")
	rb := ingest(t, b, key, logLinesOf(t, a), "replica a")
	if len(ra.Applied) != 4 || len(rb.Applied) != 5 || ra.Duplicates != 2 {
		t.Fatalf("applied %d/%d duplicates %d", len(ra.Applied), len(rb.Applied), ra.Duplicates)
	}
	if mustRead(t, filepath.Join(a, store.EventsPath)) != mustRead(t, filepath.Join(b, store.EventsPath)) {
		t.Fatalf("replicas differ after exchanging logs")
	}
	mustVerify(t, a)
	mustVerify(t, b)
	// Idempotent: ingesting again changes nothing.
	before := mustRead(t, filepath.Join(a, store.EventsPath))
	again := ingest(t, a, key, logLinesOf(t, b), "replica b")
	if len(again.Applied) != 0 || mustRead(t, filepath.Join(a, store.EventsPath)) != before {
		t.Fatalf("second ingest changed the log")
	}
}

func TestIngestHoldsWhatItCannotApply(t *testing.T) {
	a, b, key := replicas(t)
	appendN(t, b, key, "south", 3, clock())
	var news [][]byte // the three new events, in chain order
	for _, l := range logLinesOf(t, b) {
		if bytes.Contains(l, []byte(`"actor":"south"`)) {
			news = append(news, l)
		}
	}
	if len(news) != 3 {
		t.Fatalf("%d new events", len(news))
	}
	// Only the last two arrive: they wait for the first.
	r := ingest(t, a, key, news[1:], "partial")
	if len(r.Applied) != 0 || len(r.Pending) != 2 || !strings.Contains(r.Missing["south"].String("south"), "need events after") {
		t.Fatalf("pending %+v missing %+v", r.Pending, r.Missing)
	}
	// The first arrives: all three are applied.
	r = ingest(t, a, key, news[:1], "rest")
	if len(r.Applied) != 3 || len(r.Pending) != 0 {
		t.Fatalf("after predecessor: applied %v pending %v", r.Applied, r.Pending)
	}
	// An event by an unknown key is quarantined, a forged one rejected.
	stranger, _ := bplog.KeyFromSeedB64("paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=")
	var body canon.ObjectBuilder
	body.Set("type", canon.StringValue("OBSERVATION")).Set("actor", canon.StringValue("stranger")).
		Set("prev_event_hash", canon.NullValue()).Set("timestamp_utc", canon.StringValue("2026-03-01T09:00:00+00:00")).Set("payload", canon.ObjectValue())
	_, sl, _ := stranger.Signer().Seal(body.Value())
	forged := bytes.Replace(news[0], []byte(`"value":0`), []byte(`"value":9`), 1)
	r = ingest(t, a, key, [][]byte{sl, forged}, "hostile")
	if len(r.Quarantined) != 1 || len(r.Rejected) != 1 || len(r.Applied) != 0 {
		t.Fatalf("quarantined %v rejected %v", r.Quarantined, r.Rejected)
	}
	mustVerify(t, a)
}

func TestIngestFork(t *testing.T) {
	a, b, key := replicas(t)
	appendN(t, a, key, "field_laptop", 1, clock())
	c2 := clock()
	c2()
	appendN(t, b, key, "field_laptop", 1, c2) // same actor, same predecessor
	r := ingest(t, a, key, logLinesOf(t, b), "replica b")
	if len(r.Forks) != 1 || len(r.Applied) != 1 {
		t.Fatalf("forks %+v applied %v", r.Forks, r.Applied)
	}
	// The device records the fork once, as a signed conflict event.
	countConflicts := func() int {
		return strings.Count(mustRead(t, filepath.Join(a, store.EventsPath)), `"type":"com.provara.sync.conflict"`)
	}
	if n := countConflicts(); n != 1 {
		t.Fatalf("%d conflict events, want 1", n)
	}
	log := mustRead(t, filepath.Join(a, store.EventsPath))
	if !strings.Contains(log, `"conflict_type":"CAUSAL_FORK"`) || !strings.Contains(log, `"fork_point_id":"`+r.Forks[0].Prev+`"`) {
		t.Fatalf("conflict event payload: %s", log)
	}
	ingest(t, a, key, logLinesOf(t, b), "replica b again")
	if n := countConflicts(); n != 1 {
		t.Fatalf("%d conflict events after a second delivery, want 1", n)
	}
	// verify passes: the fork is recorded evidence, reported as a warning.
	rep := mustVerify(t, a)
	if len(rep.Forks) != 1 || rep.Warnings < 1 {
		t.Fatalf("verify after a recorded fork: forks %d warnings %d", len(rep.Forks), rep.Warnings)
	}
	// Where each side came from is kept with the fork.
	bp, err := store.Open(context.Background(), a, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	recs, err := bp.ForkRecords()
	if err != nil || len(recs) != 1 || !strings.Contains(fmt.Sprint(recs[0]), "replica b") {
		t.Fatalf("fork records %+v %v", recs, err)
	}
}

// TestDeltaWhenReceiverIsAheadOrForked: when the receiver names a head the
// sender does not hold, the sender sends the actor's whole chain.
func TestDeltaWhenReceiverIsAheadOrForked(t *testing.T) {
	a, b, key := replicas(t)
	ca := clock()
	appendN(t, a, key, "north", 3, ca)
	ingest(t, b, key, logLinesOf(t, a), "a") // b learns north's first 3
	appendN(t, a, key, "north", 2, ca)       // a moves ahead on north
	c := clock()
	for range 10 {
		c()
	}
	appendN(t, b, key, "south", 1, c)
	ra, err := store.Open(context.Background(), a, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	fa := ra.Frontier()
	ra.Close()
	rb, err := store.Open(context.Background(), b, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	lines, err := rb.Delta(context.Background(), fa)
	if err != nil {
		t.Fatal(err)
	}
	// south's one event, plus north's whole chain as b holds it: a is
	// ahead on north, which a frontier cannot tell from a fork, so b sends
	// what it has of north rather than risk leaving a fork side behind.
	if len(lines) != 4 {
		t.Fatalf("delta has %d events, want 4", len(lines))
	}
	// With ancestors in a's frontier, b finds where the chains meet (a's
	// third north event, which b holds at the same count) and sends only
	// south's event.
	ra, err = store.Open(context.Background(), a, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	fwa, err := ra.FrontierWithAncestors(context.Background())
	ra.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h := fwa["north"]; h.Count < 5 || len(h.Ancestors) == 0 {
		t.Fatalf("north in a's frontier: %+v", h)
	}
	parsed, err := bplog.ParseFrontier(fwa.Encode())
	if err != nil || len(parsed["north"].Ancestors) != len(fwa["north"].Ancestors) {
		t.Fatalf("frontier with ancestors does not round-trip: %v", err)
	}
	short, err := rb.Delta(context.Background(), parsed)
	if err != nil {
		t.Fatal(err)
	}
	if len(short) != 1 {
		t.Fatalf("delta against a frontier with ancestors has %d events, want 1 (south's)", len(short))
	}
	res := ingest(t, a, key, lines, "delta")
	if len(res.Applied) != 1 || res.Duplicates != 3 || len(res.Pending) != 0 {
		t.Fatalf("applied %v duplicates %d pending %d", res.Applied, res.Duplicates, len(res.Pending))
	}
}

func TestAncestorCounts(t *testing.T) {
	for n, want := range map[int64][]int64{
		0: nil, 1: nil, 2: {1}, 3: {2, 1}, 5: {4, 3, 1}, 9: {8, 7, 5, 1}, 100: {99, 98, 96, 92, 84, 68, 36, 1},
	} {
		if got := bplog.AncestorCounts(n); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("AncestorCounts(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestIngestPrepared: lines hashed beforehand (Prepare, as a merge does
// while the backpack opens) ingest exactly as plain lines do.
func TestIngestPrepared(t *testing.T) {
	a, b, key := replicas(t)
	ca, cb := clock(), clock()
	cb()
	appendN(t, a, key, "north", 5, ca)
	appendN(t, b, key, "south", 4, cb)
	a2 := filepath.Join(filepath.Dir(a), "a2")
	copyDir(t, a, a2)
	a3 := filepath.Join(filepath.Dir(a), "a3")
	copyDir(t, a, a3)
	a4 := filepath.Join(filepath.Dir(a), "a4")
	copyDir(t, a, a4)
	lines := logLinesOf(t, b)
	lines = append(lines, []byte("not an event"), lines[len(lines)-1])
	plain := ingest(t, a, key, lines, "b")
	bp, err := store.Open(context.Background(), a2, store.Options{KeyFile: key, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	prepared, err := bp.IngestPrepared(context.Background(), store.Prepare(lines), "b")
	bp.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Applied) != 4 || len(prepared.Applied) != len(plain.Applied) || prepared.Duplicates != plain.Duplicates ||
		len(prepared.Rejected) != len(plain.Rejected) || prepared.Rewrote != plain.Rewrote {
		t.Fatalf("plain %+v\nprepared %+v", plain, prepared)
	}
	if mustRead(t, filepath.Join(a, store.EventsPath)) != mustRead(t, filepath.Join(a2, store.EventsPath)) {
		t.Fatal("logs differ between plain and prepared ingest")
	}
	mustVerify(t, a2)

	// A whole log's bytes, with noise (a blank line, CRLF, blanks around
	// a line), prepared without hashing and ingested into a backpack that
	// keeps its log: the shared lines at its start are recognised by
	// their bytes, the rest as plain lines are.
	last := lines[len(lines)-3]
	data := mustRead(t, filepath.Join(b, store.EventsPath)) + "\n" + "not an event\r\n" + "  " + string(last) + " \n"
	var noisy [][]byte
	for _, l := range strings.Split(data, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			noisy = append(noisy, []byte(l))
		}
	}
	// The lines both logs start with (the order of events with one
	// timestamp follows their random ids).
	sharedHead := 0
	for la, lb := logLinesOf(t, a4), logLinesOf(t, b); sharedHead < min(len(la), len(lb)) && bytes.Equal(la[sharedHead], lb[sharedHead]); {
		sharedHead++
	}
	if sharedHead == 0 {
		t.Fatal("the replicas share no first line")
	}
	plain = ingest(t, a3, key, noisy, "b")
	p, err := store.PrepareLog([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	bp, err = store.Open(context.Background(), a4, store.Options{KeyFile: key, Now: clock(), KeepLog: true})
	if err != nil {
		t.Fatal(err)
	}
	prepared, err = bp.IngestPrepared(context.Background(), p, "b")
	bp.Close()
	if err != nil {
		t.Fatal(err)
	}
	if held := store.PreparedHeld(p); held != sharedHead {
		t.Errorf("%d of %d lines recognised as held by their bytes", held, len(noisy))
	}
	if prepared.Received != len(noisy) || prepared.Received != plain.Received || len(plain.Applied) != 4 || len(prepared.Applied) != len(plain.Applied) || prepared.Duplicates != plain.Duplicates ||
		len(prepared.Rejected) != len(plain.Rejected) || prepared.Rewrote != plain.Rewrote {
		t.Fatalf("plain %+v\nprepared from bytes %+v", plain, prepared)
	}
	if mustRead(t, filepath.Join(a3, store.EventsPath)) != mustRead(t, filepath.Join(a4, store.EventsPath)) {
		t.Fatal("logs differ between plain ingest and ingest of prepared bytes")
	}
	mustVerify(t, a4)
}
