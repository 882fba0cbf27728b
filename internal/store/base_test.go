package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
)

// appendBatch appends n observations by actor in one batch.
func appendBatch(t *testing.T, dir, key, actor string, n int, now func() time.Time) {
	t.Helper()
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, Actor: actor, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	bodies := make([]canon.Value, n)
	for i := range bodies {
		bodies[i] = observation(actor+"_site", "reading", canon.IntValue(int64(i%7)), 0.5+float64(i%5)/10)
	}
	if _, err := bp.AppendBatch(bodies); err != nil {
		t.Fatal(err)
	}
}

// TestRewriteReplaysFromSnapshot: a merge that reorders only the log's
// tail replays the reducer from the base snapshot (taken when the log was
// replayed, kept in the state cache), and ends in exactly the state of a
// replay from scratch, with the same log as the other replica.
func TestRewriteReplaysFromSnapshot(t *testing.T) {
	defer store.SetMinBaseBytes(16 << 10)()
	a, b, key := replicas(t)
	now := clock()
	appendBatch(t, a, key, "north", 1500, now) // shared history, over a thousand events so a cache is kept
	b2 := filepath.Join(filepath.Dir(b), "replica2")
	copyDir(t, a, b2)
	b = b2
	// Both sides go on, with interleaved clocks.
	ca, cb := clock(), clock()
	for range 3000 {
		ca()
		cb()
	}
	cb()
	appendBatch(t, a, key, "north", 40, ca)
	appendBatch(t, b, key, "south", 30, cb)

	// A fresh open replays (no cache after a small batch) and takes the
	// snapshot near the end; the merge reorders the tail after it.
	for round, pair := range [][2]string{{a, b}, {b, a}} {
		before := store.BaseReplays()
		bp, err := store.Open(context.Background(), pair[0], store.Options{KeyFile: key, Now: clock()})
		if err != nil {
			t.Fatal(err)
		}
		if bp.BaseOffset() < 0 {
			t.Fatalf("round %d: no base snapshot after opening a %d-event log", round, len(logLinesOf(t, pair[0])))
		}
		res, err := bp.Ingest(context.Background(), logLinesOf(t, pair[1]), "other replica")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Rewrote {
			t.Fatalf("round %d: merge did not reorder the log", round)
		}
		got, err := bp.StateHash()
		if err != nil {
			t.Fatal(err)
		}
		if err := bp.Close(); err != nil {
			t.Fatal(err)
		}
		if store.BaseReplays() != before+1 {
			t.Fatalf("round %d: the state was not replayed from the snapshot", round)
		}
		if want := replayHash(t, pair[0]); got != want {
			t.Fatalf("round %d: state after merge %s, replay from scratch %s", round, got, want)
		}
		mustVerify(t, pair[0])
	}
	if mustRead(t, filepath.Join(a, store.EventsPath)) != mustRead(t, filepath.Join(b, store.EventsPath)) {
		t.Fatal("replicas differ after the merges")
	}

	// The snapshot survives in the state cache: a later merge, in a new
	// process, uses it again.
	appendBatch(t, a, key, "north", 10, ca)
	appendBatch(t, b, key, "south", 10, cb)
	before := store.BaseReplays()
	bp, err := store.Open(context.Background(), a, store.Options{KeyFile: key, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := bp.Ingest(context.Background(), logLinesOf(t, b), "other replica")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := bp.StateHash()
	bp.Close()
	if !res.Rewrote || store.BaseReplays() != before+1 {
		t.Fatalf("second merge: rewrote %v, snapshot replays %d", res.Rewrote, store.BaseReplays()-before)
	}
	if want := replayHash(t, a); got != want {
		t.Fatalf("state after second merge %s, replay from scratch %s", got, want)
	}
	mustVerify(t, a)
}
