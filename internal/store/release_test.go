package store_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// openW opens dir for writing.
func openW(t *testing.T, dir, key string) *store.Backpack {
	t.Helper()
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

// later is a clock an hour after clock's, so that appends with it keep
// the log in the merge order.
func later() func() time.Time {
	c := clock()
	return func() time.Time { return c().Add(time.Hour) }
}

// reacquireAgrees reacquires bp and checks that its state, heads and log
// size agree with a fresh open and a replay.
func reacquireAgrees(t *testing.T, bp *store.Backpack, dir, key string, thorough bool) *store.Reacquired {
	t.Helper()
	res, err := bp.Reacquire(context.Background(), thorough)
	if err != nil {
		t.Fatal(err)
	}
	got := stateHash(t, bp)
	if want := replayHash(t, dir); got != want {
		t.Fatalf("state after reacquire %s, replay %s (%+v)", got, want, res)
	}
	fresh, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	s1, s2 := bp.Snapshot(), fresh.Snapshot()
	if s1.LogSize != s2.LogSize || s1.EventCount != s2.EventCount || s1.MerkleRoot != s2.MerkleRoot || len(s1.Heads) != len(s2.Heads) {
		t.Fatalf("snapshot after reacquire %+v, fresh open %+v", s1, s2)
	}
	for a, h := range s2.Heads {
		if s1.Heads[a] != h {
			t.Fatalf("head of %s: %+v after reacquire, %+v fresh", a, s1.Heads[a], h)
		}
	}
	return res
}

func TestReleaseReacquireAfterAppends(t *testing.T) {
	dir, res := newBackpack(t)
	appendN(t, dir, res.KeyFile, "field_laptop", 20, clock())
	bp := openW(t, dir, res.KeyFile)
	defer bp.Close()
	if err := bp.Release(); err != nil {
		t.Fatal(err)
	}
	// Released: reads work, writes say why they cannot.
	if bp.Snapshot().EventCount < 20 {
		t.Fatalf("snapshot lost while released: %+v", bp.Snapshot())
	}
	if _, err := bp.Append(observation("x", "y", canon.IntValue(1), 0.5)); !errors.Is(err, store.ErrReleased) {
		t.Fatalf("append while released: %v, want ErrReleased", err)
	}
	// Another writer appends meanwhile; our lock is free for it.
	appendN(t, dir, res.KeyFile, "other_writer", 7, later())
	got := reacquireAgrees(t, bp, dir, res.KeyFile, false)
	if got.Appended != 7 || got.Reloaded != "" {
		t.Fatalf("reacquire = %+v, want 7 appended lines and no reload", got)
	}
	// Written again, and consistent on disk.
	if _, err := bp.Append(observation("x", "y", canon.IntValue(2), 0.5)); err != nil {
		t.Fatal(err)
	}
	if err := bp.Release(); err != nil {
		t.Fatal(err)
	}
	got = reacquireAgrees(t, bp, dir, res.KeyFile, true)
	if got.Appended != 0 || got.Reloaded != "" {
		t.Fatalf("reacquire with nothing changed = %+v", got)
	}
	bp.Close()
	mustVerify(t, dir)
}

func TestReacquireWhileLocked(t *testing.T) {
	dir, res := newBackpack(t)
	bp := openW(t, dir, res.KeyFile)
	defer bp.Close()
	if err := bp.Release(); err != nil {
		t.Fatal(err)
	}
	other := openW(t, dir, res.KeyFile)
	if _, err := bp.Reacquire(context.Background(), false); !errors.Is(err, bplog.ErrLocked) {
		t.Fatalf("reacquire while another writer holds the lock: %v, want ErrLocked", err)
	}
	if _, err := other.Append(observation("x", "y", canon.IntValue(1), 0.5)); err != nil {
		t.Fatal(err)
	}
	other.Close()
	got := reacquireAgrees(t, bp, dir, res.KeyFile, false)
	if got.Appended != 1 {
		t.Fatalf("reacquire = %+v, want 1 appended", got)
	}
}

func TestReacquireAfterRewrite(t *testing.T) {
	a, b, key := replicas(t)
	// Both sides write with the same clock, so b's events interleave with
	// a's in the merge order and importing them rewrites a's log.
	appendN(t, a, key, "actor_a", 30, clock())
	appendN(t, b, key, "actor_b", 30, clock())
	bp := openW(t, a, key)
	defer bp.Close()
	if err := bp.Release(); err != nil {
		t.Fatal(err)
	}
	if r := ingest(t, a, key, logLinesOf(t, b), "replica b"); len(r.Applied) != 30 {
		t.Fatalf("ingest applied %d, want 30", len(r.Applied))
	}
	got := reacquireAgrees(t, bp, a, key, false)
	if got.Reloaded == "" {
		t.Fatalf("reacquire after a rewrite = %+v, want a reload", got)
	}
	t.Logf("reloaded: %s", got.Reloaded)
}

func TestReacquireThoroughSeesEditBeforeTail(t *testing.T) {
	dir, res := newBackpack(t)
	appendN(t, dir, res.KeyFile, "field_laptop", 400, clock()) // > 64 KiB
	bp := openW(t, dir, res.KeyFile)
	defer bp.Close()
	before := stateHash(t, bp)
	if err := bp.Release(); err != nil {
		t.Fatal(err)
	}
	// Change one byte early in the log, in place (same inode, same size).
	path := filepath.Join(dir, store.EventsPath)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	f.ReadAt(buf, 2000)
	buf[0] ^= 1
	f.WriteAt(buf, 2000)
	f.Close()
	// The cheap check looks at the tail only and keeps the state.
	got, err := bp.Reacquire(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reloaded != "" || stateHash(t, bp) != before {
		t.Fatalf("cheap reacquire = %+v", got)
	}
	if err := bp.Release(); err != nil {
		t.Fatal(err)
	}
	got, err = bp.Reacquire(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reloaded == "" {
		t.Fatalf("thorough reacquire missed an edit before the tail: %+v", got)
	}
	if h := stateHash(t, bp); h != replayHash(t, dir) {
		t.Fatalf("state after reload %s, replay %s", h, replayHash(t, dir))
	}
}

// TestDeltaReadsTheTail: Delta finds the lines it sends from the end of
// the log by their hashes, passing over lines the index leaves out (a bad
// line, a repeated event) and using the canonical form of a line stored
// otherwise.
func TestDeltaReadsTheTail(t *testing.T) {
	dir, res := newBackpack(t)
	appendN(t, dir, res.KeyFile, "field_laptop", 300, later())
	lines := logLinesOf(t, dir)
	n := len(lines)
	want := make([][]byte, 0, 50)
	for _, l := range lines[n-50:] {
		want = append(want, bytes.Clone(l))
	}
	cutEv, err := bplog.Parse(lines[n-51])
	if err != nil {
		t.Fatal(err)
	}
	// Noise in the part Delta reads: garbage, a repeated line, a line
	// stored with extra space.
	var out [][]byte
	for i, l := range lines {
		switch i {
		case n - 30:
			out = append(out, []byte("garbage, not an event"), lines[n-40])
			l = append([]byte("{ "), l[1:]...)
		}
		out = append(out, l)
	}
	if err := os.WriteFile(filepath.Join(dir, store.EventsPath), append(bytes.Join(out, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	bp, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	since := bplog.Frontier{"field_laptop": {Head: cutEv.ID, Count: int64(n - 50)}} // every line is this actor's
	got, err := bp.Delta(context.Background(), since)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("delta has %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("delta line %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
	// Several receivers at once: the union, and each one's share.
	all, which, err := bp.Deltas(context.Background(), []bplog.Frontier{since, {}})
	if err != nil {
		t.Fatal(err)
	}
	if len(which[0]) != 50 || len(which[1]) != len(all) || len(all) < n-1 {
		t.Fatalf("deltas: %d lines, shares %d and %d", len(all), len(which[0]), len(which[1]))
	}
}

// TestIngestProgress: a long ingest reports checking progress and then
// the write.
func TestIngestProgress(t *testing.T) {
	a, b, key := replicas(t)
	bp := openW(t, b, key)
	bodies := make([]canon.Value, 2500)
	for i := range bodies {
		bodies[i] = observation("well", "level", canon.IntValue(int64(i)), 0.5)
	}
	if _, err := bp.AppendBatch(bodies); err != nil {
		t.Fatal(err)
	}
	bp.Close()
	var mu sync.Mutex
	var got []store.Progress
	ap, err := store.Open(context.Background(), a, store.Options{KeyFile: key, Now: clock(), Progress: func(p store.Progress) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	if _, err := ap.Ingest(context.Background(), logLinesOf(t, b), "replica b"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 {
		t.Fatalf("progress reports: %+v", got)
	}
	last, before := got[len(got)-1], got[len(got)-2]
	if before.Phase != "checking" || before.Done != before.Total || before.Total < 2500 ||
		last.Phase != "writing" || last.Total != 2500 || last.Source != "replica b" {
		t.Fatalf("last progress reports: %+v then %+v", before, last)
	}
}

// TestKeysCatchUpAfterCrash: a writer that died between appending a
// KEY_PROMOTION and updating identity/keys.json leaves keys.json behind;
// the next writer's open applies the event. A KEY_PROMOTION another
// program appended, signed by a key the backpack does not trust, is not
// applied.
func TestKeysCatchUpAfterCrash(t *testing.T) {
	dir, res := newBackpack(t)
	keysPath := filepath.Join(dir, store.KeysPath)
	before, err := os.ReadFile(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := bplog.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	bp := openW(t, dir, res.KeyFile)
	ev, _, err := bp.TrustKey(context.Background(), newKey.Public(), []string{"attestation"})
	if err != nil {
		t.Fatal(err)
	}
	bp.Close()
	// The crash: keys.json as it was before the event.
	if err := os.WriteFile(keysPath, before, 0o644); err != nil {
		t.Fatal(err)
	}
	bp = openW(t, dir, res.KeyFile)
	k, ok := bp.Registry().Key(newKey.ID)
	if !ok || k.PromotionEventID != ev.ID {
		t.Fatalf("after reopening, key %s: %+v (found %v), want promoted by %s", newKey.ID, k, ok, ev.ID)
	}
	bp.Close()

	// A stranger's promotion of its own key, appended by hand.
	stranger, err := bplog.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var p, body canon.ObjectBuilder
	p.Set("new_key_id", canon.StringValue(stranger.ID)).
		Set("new_public_key_b64", canon.StringValue(base64.StdEncoding.EncodeToString(stranger.Public()))).
		Set("roles", canon.ArrayValue(canon.StringValue("attestation"))).
		Set("promoted_at_utc", canon.StringValue("2026-03-01T09:00:00+00:00")).
		Set("replaces_key_id", canon.NullValue())
	body.Set("type", canon.StringValue(store.KeyPromotionType)).Set("actor", canon.StringValue("stranger")).
		Set("prev_event_hash", canon.NullValue()).Set("timestamp_utc", canon.StringValue("2026-03-01T09:00:00+00:00")).
		Set("payload", p.Value())
	_, line, err := stranger.Signer().Seal(body.Value())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, store.EventsPath), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(line, '\n'))
	f.Close()
	bp = openW(t, dir, res.KeyFile)
	defer bp.Close()
	if _, ok := bp.Registry().Key(stranger.ID); ok {
		t.Fatalf("a key promoted by an untrusted key became trusted")
	}
}
