package store_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// Sync benchmarks: two replicas of one generated backpack that diverged by
// syncTail new events on each side (disjoint actors, so no fork, with
// interleaved timestamps, so a merge must reorder the log), and a delta of
// syncTail events imported into backpacks of different sizes.
//
//	go test -run '^$' -bench 'Sync' -benchtime 5x ./internal/store
//
// Fixtures are generated once per test binary (the 1,000,000-event one
// takes about a minute); nothing here runs without -bench.

const syncTail = 5000

// syncFixture is a base backpack and two divergent replicas of it.
type syncFixture struct {
	base         string // the shared backpack
	key          string // device key file (shared identity)
	baseFrontier bplog.Frontier
	tailA, tailB [][]byte // each side's new events, canonical lines
	repA, repB   string   // base + tailA, base + tailB
	events       int      // events in base
}

var (
	syncFix   = map[int]*syncFixture{}
	syncErr   = map[int]error{}
	syncOnces = map[int]*sync.Once{100000: {}, 300000: {}, 1000000: {}}
	syncGen   = map[int]*gen.Result{}
)

// syncFixtureN returns the fixture for a base of n generated events (100k
// reuses backpack100k's backpack).
func syncFixtureN(b *testing.B, n int) *syncFixture {
	b.Helper()
	backpack100k(b) // sets benchRoot and XDG_STATE_HOME
	once := syncOnces[n]
	if once == nil {
		b.Fatalf("no sync fixture for %d events", n)
	}
	once.Do(func() {
		b.Logf("generating sync fixture: %d events + 2 x %d", n, syncTail)
		t0 := time.Now()
		syncFix[n], syncErr[n] = makeSyncFixture(n)
		b.Logf("sync fixture %d ready in %v", n, time.Since(t0).Round(time.Millisecond))
	})
	if syncErr[n] != nil {
		b.Fatal(syncErr[n])
	}
	return syncFix[n]
}

func makeSyncFixture(n int) (*syncFixture, error) {
	ctx := context.Background()
	var g *gen.Result
	if n == 100000 {
		g = big100k
	} else {
		var err error
		root := filepath.Join(benchRoot, fmt.Sprintf("sync%d", n))
		g, err = gen.Backpack(ctx, filepath.Join(root, "src"), filepath.Join(root, "keys"), gen.Options{Events: n, Actors: 5, Seed: 1})
		if err != nil {
			return nil, err
		}
		syncGen[n] = g
	}
	f := &syncFixture{base: g.Dir, key: g.KeyFile, events: n}
	bp, err := store.Open(ctx, g.Dir, store.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	f.baseFrontier = bp.Frontier()
	bp.Close()

	// Side A: field_team_1..3; side B: field_team_4..5. Both start at the
	// same instant, after every base event, so their events interleave.
	start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if f.tailA, err = syncTailLines(g.Keys, f.baseFrontier, []int{0, 1, 2}, start, 11); err != nil {
		return nil, err
	}
	if f.tailB, err = syncTailLines(g.Keys, f.baseFrontier, []int{3, 4}, start, 12); err != nil {
		return nil, err
	}
	root := filepath.Join(benchRoot, fmt.Sprintf("replicas%d", n))
	f.repA, f.repB = filepath.Join(root, "a"), filepath.Join(root, "b")
	for _, r := range []struct {
		dir  string
		tail [][]byte
	}{{f.repA, f.tailA}, {f.repB, f.tailB}} {
		if err := os.CopyFS(r.dir, os.DirFS(g.Dir)); err != nil {
			return nil, err
		}
		bp, err := store.Open(ctx, r.dir, store.Options{KeyFile: g.KeyFile})
		if err != nil {
			return nil, err
		}
		res, err := bp.Ingest(ctx, r.tail, "fixture")
		if err == nil && len(res.Applied) != syncTail {
			err = fmt.Errorf("fixture: %d of %d applied (%d pending, %d rejected)", len(res.Applied), syncTail, len(res.Pending), len(res.Rejected))
		}
		if cerr := bp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// syncTailLines signs syncTail new events by the given actors (indices
// into keys, actor field_team_<i+1>), continuing their chains from
// frontier, with timestamps from start.
func syncTailLines(keys []bplog.PrivateKey, frontier bplog.Frontier, actors []int, start time.Time, seed uint64) ([][]byte, error) {
	rng := rand.New(rand.NewPCG(seed, 0x73796e63))
	heads := map[int]string{}
	for _, a := range actors {
		heads[a] = frontier[fmt.Sprintf("field_team_%d", a+1)].Head
	}
	now := start
	out := make([][]byte, 0, syncTail)
	for i := range syncTail {
		a := actors[rng.IntN(len(actors))]
		now = now.Add(time.Duration(200+rng.IntN(5000)) * time.Millisecond)
		var p canon.ObjectBuilder
		p.Set("subject", canon.StringValue(fmt.Sprintf("waterpoint_%04d", rng.IntN(2000)))).
			Set("predicate", canon.StringValue("status")).
			Set("value", canon.StringValue([]string{"working", "broken", "dry"}[rng.IntN(3)])).
			Set("confidence", canon.FloatValue(float64(1+rng.IntN(10))/10))
		typ := "OBSERVATION"
		if i%7 == 0 {
			typ = "ASSERTION"
		}
		prev := canon.NullValue()
		if heads[a] != "" {
			prev = canon.StringValue(heads[a])
		}
		var body canon.ObjectBuilder
		body.Set("type", canon.StringValue(typ)).Set("namespace", canon.StringValue("local")).
			Set("actor", canon.StringValue(fmt.Sprintf("field_team_%d", a+1))).Set("payload", p.Value()).
			Set("prev_event_hash", prev).Set("timestamp_utc", canon.StringValue(pytime.FormatUTC(now)))
		e, line, err := keys[a].Signer().Seal(body.Value())
		if err != nil {
			return nil, err
		}
		heads[a] = e.ID
		out = append(out, line)
	}
	return out, nil
}

// logLines returns the event lines of a backpack's log.
func syncLogLines(b *testing.B, dir string) [][]byte {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(dir, store.EventsPath))
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// syncIngestBench copies src to a fresh directory before each iteration
// (not timed), then times open (writer, with the state cache) + Ingest of
// lines + Close, and reports each phase and the new events applied per
// second.
func syncIngestBench(b *testing.B, src, key string, lines [][]byte, wantApplied int) {
	syncIngestBenchAs(b, src, key, lines, nil, wantApplied)
}

// syncIngestBenchAs is syncIngestBench; with remote set it ingests that
// whole log's bytes as `backpack merge` does instead (KeepLog and
// DeferState, PrepareLog then IngestPrepared, timed as the ingest).
func syncIngestBenchAs(b *testing.B, src, key string, lines [][]byte, remote []byte, wantApplied int) {
	ctx := context.Background()
	work := b.TempDir()
	var open, ingest, closing time.Duration
	var rewrote bool
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		i++
		dir := filepath.Join(work, fmt.Sprint(i))
		os.RemoveAll(filepath.Join(work, fmt.Sprint(i-1)))
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			b.Fatal(err)
		}
		// Write the copy back now, or the first fsync of the log would
		// pay for writing the whole copied file.
		syscall.Sync()
		b.StartTimer()
		var t0, t1, t2, t3 time.Time
		var res *store.IngestResult
		// Labelled so that one CPU profile of several sizes can be split:
		// go tool pprof -tagfocus bench=<name>.
		pprof.Do(ctx, pprof.Labels("bench", b.Name()), func(ctx context.Context) {
			t0 = time.Now()
			bp, err := store.Open(ctx, dir, store.Options{KeyFile: key, KeepLog: remote != nil, DeferState: remote != nil})
			if err != nil {
				b.Fatal(err)
			}
			t1 = time.Now()
			if remote != nil {
				var p *store.Prepared
				if p, err = store.PrepareLog(remote); err == nil {
					res, err = bp.IngestPrepared(ctx, p, "bench")
				}
			} else {
				res, err = bp.Ingest(ctx, lines, "bench")
			}
			if err != nil {
				b.Fatal(err)
			}
			t2 = time.Now()
			if err := bp.Close(); err != nil {
				b.Fatal(err)
			}
			t3 = time.Now()
		})
		open, ingest, closing = open+t1.Sub(t0), ingest+t2.Sub(t1), closing+t3.Sub(t2)
		rewrote = res.Rewrote
		if len(res.Applied) != wantApplied || len(res.Pending)+len(res.Rejected)+len(res.Quarantined)+len(res.Forks) > 0 {
			b.Fatalf("applied %d (want %d), pending %d, rejected %d, quarantined %d, forks %d",
				len(res.Applied), wantApplied, len(res.Pending), len(res.Rejected), len(res.Quarantined), len(res.Forks))
		}
	}
	b.StopTimer()
	n := float64(i)
	b.ReportMetric(open.Seconds()*1e3/n, "open-ms")
	b.ReportMetric(ingest.Seconds()*1e3/n, "ingest-ms")
	b.ReportMetric(closing.Seconds()*1e3/n, "close-ms")
	b.ReportMetric(float64(wantApplied)*n/(open+ingest+closing).Seconds(), "new-events/s")
	if rewrote {
		b.ReportMetric(1, "rewrote")
	} else {
		b.ReportMetric(0, "rewrote")
	}
}

// BenchmarkSyncMerge100k: merge two 100,000-event replicas that diverged
// by 5,000 new events on each side, in both directions. "tail" ingests
// only the other side's new events (what a frontier + delta exchange
// sends); "log" ingests the other side's whole log (what `backpack merge
// LOCAL REMOTE` reads), so 100,002 of its lines are already held.
func BenchmarkSyncMerge100k(b *testing.B) {
	f := syncFixtureN(b, 100000)
	var logA, logB [][]byte
	b.Run("tail/A<-B", func(b *testing.B) { syncIngestBench(b, f.repA, f.key, f.tailB, syncTail) })
	b.Run("tail/B<-A", func(b *testing.B) { syncIngestBench(b, f.repB, f.key, f.tailA, syncTail) })
	b.Run("log/A<-B", func(b *testing.B) {
		if logB == nil {
			logB = syncLogLines(b, f.repB)
		}
		syncIngestBench(b, f.repA, f.key, logB, syncTail)
	})
	b.Run("log/B<-A", func(b *testing.B) {
		if logA == nil {
			logA = syncLogLines(b, f.repA)
		}
		syncIngestBench(b, f.repB, f.key, logA, syncTail)
	})
	// What `backpack merge` does: the other log's bytes, compared with
	// the log the open read.
	for _, d := range []struct{ name, local, remote string }{{"merge/A<-B", f.repA, f.repB}, {"merge/B<-A", f.repB, f.repA}} {
		b.Run(d.name, func(b *testing.B) {
			data, err := os.ReadFile(filepath.Join(d.remote, store.EventsPath))
			if err != nil {
				b.Fatal(err)
			}
			syncIngestBenchAs(b, d.local, f.key, nil, data, syncTail)
		})
	}
}

// BenchmarkSyncImport: import a 5,000-event delta (new events by three
// actors, after every held event, as a peer's bundle brings them) into
// backpacks of 100,000 and 1,000,000 generated events. The time should
// grow with the delta, not with the backpack: compare the two.
func BenchmarkSyncImport(b *testing.B) {
	for _, n := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("base=%dk", n/1000), func(b *testing.B) {
			f := syncFixtureN(b, n)
			syncIngestBench(b, f.base, f.key, f.tailA, syncTail)
		})
	}
}

// BenchmarkSyncImportWarm: what the agent does with a 5,000-event
// delta: its backpack stays open between imports (Release, then Reacquire
// when the bundle comes), so the time is Reacquire + Ingest + Release.
// Each iteration imports a new delta that continues the chains (made
// untimed). Compare the 100k and 1M backpacks: the time should follow
// the delta.
func BenchmarkSyncImportWarm(b *testing.B) {
	for _, n := range []int{100000, 1000000} {
		b.Run(fmt.Sprintf("base=%dk", n/1000), func(b *testing.B) {
			f := syncFixtureN(b, n)
			ctx := context.Background()
			dir := filepath.Join(b.TempDir(), "bp")
			if err := os.CopyFS(dir, os.DirFS(f.base)); err != nil {
				b.Fatal(err)
			}
			syscall.Sync()
			bp, err := store.Open(ctx, dir, store.Options{KeyFile: f.key})
			if err != nil {
				b.Fatal(err)
			}
			defer bp.Close()
			// The first pass builds what the warm store keeps.
			if _, err := bp.FrontierWithAncestors(ctx); err != nil {
				b.Fatal(err)
			}
			if err := bp.Release(); err != nil {
				b.Fatal(err)
			}
			keys := syncKeys(b, f)
			var reacq, ingest, release time.Duration
			start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
			i := 0
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				i++
				tail, err := syncTailLines(keys, bp.Frontier(), []int{0, 1, 2}, start.Add(time.Duration(i)*24*time.Hour), uint64(100+i))
				if err != nil {
					b.Fatal(err)
				}
				// BACKPACK_BENCH_GC=1 collects garbage before each import, to
				// tell the import's own time from the GC cycles a large heap
				// costs whenever they land.
				if os.Getenv("BACKPACK_BENCH_GC") != "" {
					runtime.GC()
				}
				b.StartTimer()
				t0 := time.Now()
				if _, err := bp.Reacquire(ctx, false); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				res, err := bp.Ingest(ctx, tail, "bench")
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if err := bp.Release(); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				if len(res.Applied) != syncTail {
					b.Fatalf("applied %d of %d", len(res.Applied), syncTail)
				}
				reacq, ingest, release = reacq+t1.Sub(t0), ingest+t2.Sub(t1), release+t3.Sub(t2)
			}
			b.StopTimer()
			n := float64(i)
			b.ReportMetric(reacq.Seconds()*1e3/n, "reacquire-ms")
			b.ReportMetric(ingest.Seconds()*1e3/n, "ingest-ms")
			b.ReportMetric(release.Seconds()*1e3/n, "release-ms")
		})
	}
}

// syncKeys returns the generated actors' keys of the fixture's backpack.
func syncKeys(b *testing.B, f *syncFixture) []bplog.PrivateKey {
	if f.events == 100000 {
		return big100k.Keys
	}
	g := syncGen[f.events]
	if g == nil {
		b.Fatalf("no keys for the %d fixture", f.events)
	}
	return g.Keys
}

// BenchmarkSyncDelta100k: export what a replica at the shared base lacks
// from replica A (100,002 + 5,000 events): the 5,000 new events.
func BenchmarkSyncDelta100k(b *testing.B) {
	f := syncFixtureN(b, 100000)
	bp, err := store.Open(context.Background(), f.repA, store.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	b.ReportAllocs()
	for b.Loop() {
		d, err := bp.Delta(context.Background(), f.baseFrontier)
		if err != nil {
			b.Fatal(err)
		}
		if len(d) != syncTail {
			b.Fatalf("delta has %d events, want %d", len(d), syncTail)
		}
	}
}
