package store_test

import (
	"bytes"
	"context"
	"os"
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

// divergedReplicas returns two replicas with 1,500 shared events (over a
// thousand, so a cache is kept) that then went on apart with interleaved
// clocks (a: 40 events by north, b: 30 by south), the device key, and
// each side's clock.
func divergedReplicas(t *testing.T) (a, b, key string, ca, cb func() time.Time) {
	t.Helper()
	a, b, key = replicas(t)
	appendBatch(t, a, key, "north", 1500, clock())
	b2 := filepath.Join(filepath.Dir(b), "replica2")
	copyDir(t, a, b2)
	b = b2
	ca, cb = clock(), clock()
	for range 3000 {
		ca()
		cb()
	}
	cb()
	appendBatch(t, a, key, "north", 40, ca)
	appendBatch(t, b, key, "south", 30, cb)
	return a, b, key, ca, cb
}

// TestRewriteReplaysFromSnapshot: a merge that reorders only the log's
// tail replays the reducer from the base snapshot (taken when the log was
// replayed, kept in the state cache), and ends in exactly the state of a
// replay from scratch, with the same log as the other replica.
func TestRewriteReplaysFromSnapshot(t *testing.T) {
	defer store.SetMinBaseBytes(16 << 10)()
	a, b, key, ca, cb := divergedReplicas(t)

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

// TestDamagedSnapshotNotUsed: a base snapshot whose bytes no longer match
// the digest the cache names is not replayed from (the merge replays the
// whole log) and is not written back as if it were sound.
func TestDamagedSnapshotNotUsed(t *testing.T) {
	defer store.SetMinBaseBytes(16 << 10)()
	a, b, key, ca, cb := divergedReplicas(t)
	// Open and close a without a cache: a replay that takes the
	// snapshot near the end, kept in the cache at close.
	cachePath := filepath.Join(a, store.CachePath)
	if err := os.Remove(cachePath); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	bp, err := store.Open(context.Background(), a, store.Options{KeyFile: key, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if bp.BaseOffset() < 0 {
		t.Fatal("no base snapshot")
	}
	bp.Close()
	// The snapshot is the cache's last section: damage its last byte.
	data, err := os.ReadFile(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data[:bytes.IndexByte(data[9:], '\n')+9], []byte(`"base_bytes":`)) || bytes.Contains(data[:200], []byte(`"base_bytes":0`)) {
		t.Fatalf("the cache keeps no separate snapshot section: %q", data[:400])
	}
	// A subject renamed in place: the cache's digest of the section and
	// the reducer encoding's own checksum both catch it.
	at := bytes.LastIndex(data, []byte("north_site"))
	if at < 0 || at < len(data)/2 {
		t.Fatal("no subject to damage in the snapshot section")
	}
	data[at+len("north_site")-1] = 'f'
	if err := os.WriteFile(cachePath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, deferState := range []bool{false, true} {
		before := store.BaseReplays()
		bp, err := store.Open(context.Background(), a, store.Options{KeyFile: key, Now: clock(), DeferState: deferState})
		if err != nil {
			t.Fatal(err)
		}
		res, err := bp.Ingest(context.Background(), logLinesOf(t, b), "other replica")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := bp.StateHash()
		bp.Close()
		if want := replayHash(t, a); got != want {
			t.Fatalf("defer %v: state after merge %s, replay %s", deferState, got, want)
		}
		mustVerify(t, a)
		if !deferState {
			if !res.Rewrote || store.BaseReplays() != before {
				t.Fatalf("rewrote %v; replayed from the damaged snapshot %d times", res.Rewrote, store.BaseReplays()-before)
			}
			// The cache written after that merge holds a sound
			// snapshot again: the next reordering merge uses it.
			appendBatch(t, a, key, "north", 10, ca)
			appendBatch(t, b, key, "south", 10, cb)
		} else if store.BaseReplays() != before+1 {
			t.Fatalf("after the damage the rewritten cache's snapshot was not used (%d)", store.BaseReplays()-before)
		}
	}
}
