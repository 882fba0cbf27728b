package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	basePath := filepath.Join(a, store.CacheBasePath)
	baseBefore, err := os.Stat(basePath)
	if err != nil {
		t.Fatalf("no snapshot file: %v", err)
	}
	baseData := mustRead(t, basePath)
	before := store.BaseReplays()
	if res := mergeReplica(t, a, b, key, false); !res.Rewrote || store.BaseReplays() != before+1 {
		t.Fatalf("second merge: rewrote %v, snapshot replays %d", res.Rewrote, store.BaseReplays()-before)
	}
	// The merge changed the log after the snapshot, so the snapshot's
	// file was left as it was: not written again.
	if fi, err := os.Stat(basePath); err != nil || !os.SameFile(fi, baseBefore) || !fi.ModTime().Equal(baseBefore.ModTime()) || mustRead(t, basePath) != baseData {
		t.Fatalf("the snapshot file was rewritten by a merge after it (%v)", err)
	}
	mustVerify(t, a)
}

// mergeReplica opens dir as a writer, ingests the other replica's whole
// log, closes it, checks that the state it reached is a replay's of the
// new log, and returns what the ingest did.
func mergeReplica(t *testing.T, dir, other, key string, deferState bool) *store.IngestResult {
	t.Helper()
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, Now: clock(), DeferState: deferState})
	if err != nil {
		t.Fatal(err)
	}
	res, err := bp.Ingest(context.Background(), logLinesOf(t, other), "other replica")
	if err != nil {
		t.Fatal(err)
	}
	got, err := bp.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if want := replayHash(t, dir); got != want {
		t.Fatalf("%s: state after merge %s, replay of the merged log %s", dir, got, want)
	}
	return res
}

// snapshotCache removes dir's state cache, then opens and closes dir as a
// writer: the replay takes a base snapshot near the log's end, which the
// cache written at close keeps in its own file.
func snapshotCache(t *testing.T, dir, key string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, store.CachePath)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if bp.BaseOffset() < 0 {
		t.Fatal("no base snapshot")
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.CacheBasePath)); err != nil {
		t.Fatalf("no snapshot file: %v", err)
	}
}

// TestDamagedSnapshotNotUsed: a base snapshot whose bytes no longer match
// the digest the cache names is not replayed from (the merge replays the
// whole log) and is not written back as if it were sound.
func TestDamagedSnapshotNotUsed(t *testing.T) {
	defer store.SetMinBaseBytes(16 << 10)()
	a, b, key, ca, cb := divergedReplicas(t)
	snapshotCache(t, a, key)
	// The snapshot is its own file: damage it.
	basePath := filepath.Join(a, store.CacheBasePath)
	data, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	// A subject renamed in place: the cache's digest of the file and
	// the reducer encoding's own checksum both catch it.
	at := bytes.LastIndex(data, []byte("north_site"))
	if at < 0 {
		t.Fatal("no subject to damage in the snapshot file")
	}
	data[at+len("north_site")-1] = 'f'
	if err := os.WriteFile(basePath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, deferState := range []bool{false, true} {
		before := store.BaseReplays()
		res := mergeReplica(t, a, b, key, deferState)
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

// TestCacheFilesOutOfStep: a crash between the renames of a cache write
// can leave a header that names other index and snapshot files than the
// ones on disk. Those files are then not used: the state is still the
// replay's, a merge still finds what it holds (the index is rebuilt from
// the log), and a writer's next open leaves a backpack that verifies.
func TestCacheFilesOutOfStep(t *testing.T) {
	defer store.SetMinBaseBytes(16 << 10)()
	a, b, key, ca, _ := divergedReplicas(t)
	// A cache with its own snapshot and index.
	snapshotCache(t, a, key)
	oldHeader := mustRead(t, filepath.Join(a, store.CachePath))
	// The next cache write moves everything on: the log grows, and a
	// replay takes a new snapshot near its new end.
	appendBatch(t, a, key, "north", 1000, ca)
	snapshotCache(t, a, key)
	if mustRead(t, filepath.Join(a, store.CachePath)) == oldHeader {
		t.Fatal("the cache was not rewritten")
	}
	// The crash: the new index and snapshot files are in place, the
	// header's file is the old one.
	if err := os.WriteFile(filepath.Join(a, store.CachePath), []byte(oldHeader), 0o644); err != nil {
		t.Fatal(err)
	}
	want := replayHash(t, a)
	r, err := store.Open(context.Background(), a, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := stateHash(t, r); got != want {
		t.Fatalf("state with cache files out of step %s, replay %s", got, want)
	}
	r.Close()
	if res := mergeReplica(t, a, b, key, false); len(res.Applied) != 30 {
		t.Fatalf("merge applied %d events, want the other replica's 30", len(res.Applied))
	}
	mustVerify(t, a)
}

// TestSwappedSnapshotNotUsed: a snapshot file that decodes cleanly but is
// not the one the header names (here: the main state, taken at the end of
// the log) is caught by its digest, not replayed from.
func TestSwappedSnapshotNotUsed(t *testing.T) {
	defer store.SetMinBaseBytes(16 << 10)()
	a, b, key, _, _ := divergedReplicas(t)
	snapshotCache(t, a, key)
	main := []byte(mustRead(t, filepath.Join(a, store.CachePath)))
	main = main[bytes.IndexByte(main[len("BPCACHE2\n"):], '\n')+len("BPCACHE2\n")+1:]
	if err := os.WriteFile(filepath.Join(a, store.CacheBasePath), main, 0o644); err != nil {
		t.Fatal(err)
	}
	before := store.BaseReplays()
	mergeReplica(t, a, b, key, false)
	if store.BaseReplays() != before {
		t.Error("replayed from a snapshot file the header does not name")
	}
	mustVerify(t, a)
}

// TestRewriteKeepsCleanPrefix: a merge that reorders the log's tail keeps
// the events before the first moved one without reading them when the
// log is clean, and writes exactly the log a whole rewrite writes. A log
// with lines a whole rewrite would change (not canonical, a CR, trailing
// blanks, an event twice, garbage) before that point is rewritten whole,
// and ends byte for byte as the clean replica's.
func TestRewriteKeepsCleanPrefix(t *testing.T) {
	a, b, key, _, cb := divergedReplicas(t)
	// Each kind of noise in its own replica, well before the point where
	// the logs diverged.
	noises := []struct {
		name string
		edit func(lines []string) []string
	}{
		{"not canonical", func(l []string) []string { l[10] = strings.Replace(l[10], `","`, `", "`, 1); return l }},
		{"CRLF", func(l []string) []string { l[20] = strings.TrimSuffix(l[20], "\n") + "\r\n"; return l }},
		{"trailing blanks", func(l []string) []string { l[30] = strings.TrimSuffix(l[30], "\n") + "  \n"; return l }},
		{"event twice", func(l []string) []string { return slices.Insert(l, 41, l[40]) }},
		{"garbage", func(l []string) []string { return slices.Insert(l, 50, "not json\n") }},
	}
	var noisy []string
	for i, n := range noises {
		dir := filepath.Join(filepath.Dir(a), fmt.Sprintf("noisy%d", i))
		copyDir(t, a, dir)
		logPath := filepath.Join(dir, store.EventsPath)
		lines := strings.SplitAfter(strings.TrimSuffix(mustRead(t, logPath), "\n"), "\n")
		if err := os.WriteFile(logPath, []byte(strings.Join(n.edit(lines), "")), 0o644); err != nil {
			t.Fatal(err)
		}
		noisy = append(noisy, dir)
	}
	merge := func(dir string) (tail bool) {
		t.Helper()
		before := store.TailRewrites()
		if res := mergeReplica(t, dir, b, key, false); !res.Rewrote {
			t.Fatalf("%s: the merge did not reorder the log", dir)
		}
		mustVerify(t, dir)
		return store.TailRewrites() > before
	}
	if !merge(a) {
		t.Error("the clean log was rewritten whole")
	}
	want := mustRead(t, filepath.Join(a, store.EventsPath))
	for i, dir := range noisy {
		if merge(dir) {
			t.Errorf("%s: the noisy log's prefix was kept unread", noises[i].name)
		}
		if mustRead(t, filepath.Join(dir, store.EventsPath)) != want {
			t.Errorf("%s: the log differs from the clean replica's after the merge", noises[i].name)
		}
	}
	// Once rewritten, a noisy replica is clean: the next merge keeps its
	// prefix, in a new process (the note travels in the state cache).
	appendBatch(t, b, key, "south", 5, cb)
	if !merge(noisy[0]) {
		t.Error("the rewritten log's prefix was not kept")
	}
}
