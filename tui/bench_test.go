package tui_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/tui"
)

// benchBackpack is a generated backpack of 10,000 events with 50 forks
// planted by ingest, as a device that met a misbehaving peer would have.
type benchBackpack struct {
	dir, keyFile string
	keys         []bplog.PrivateKey
}

// makeBenchBackpack generates it; tb's temp dir holds it.
func makeBenchBackpack(tb testing.TB, events, forks int) *benchBackpack {
	tb.Helper()
	base := tb.TempDir()
	res, err := gen.Backpack(context.Background(), filepath.Join(base, "bp"), base, gen.Options{Events: events, Seed: 11})
	if err != nil {
		tb.Fatal(err)
	}
	bb := &benchBackpack{dir: res.Dir, keyFile: res.KeyFile, keys: res.Keys}
	b, err := store.Open(context.Background(), res.Dir, store.Options{KeyFile: res.KeyFile})
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Close()
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range forks {
		j := i % len(res.Keys)
		actor := fmt.Sprintf("field_team_%d", j+1)
		head := b.Snapshot().Heads[actor].ID
		_, l1 := tui.Signed(tb, res.Keys[j], actor, head, at.Add(time.Duration(2*i)*time.Second), fmt.Sprintf("well_%d", i), "level", canon.IntValue(1))
		_, l2 := tui.Signed(tb, res.Keys[j], actor, head, at.Add(time.Duration(2*i+1)*time.Second), fmt.Sprintf("well_%d", i), "level", canon.IntValue(2))
		r, err := b.Ingest(context.Background(), [][]byte{[]byte(l1), []byte(l2)}, fmt.Sprintf("bundle %06d from bp1_feedfeedfeedfeed", i))
		if err != nil || len(r.Forks) != 1 {
			tb.Fatalf("fork %d: %v %+v", i, err, r)
		}
	}
	return bb
}

// benchModel is a model over the backpack, its detail loaded as the TUI
// loads it.
func benchModel(tb testing.TB, bb *benchBackpack) (tui.Model, *tui.Detail) {
	tb.Helper()
	src, err := agent.NewTUISource(bb.dir, bb.keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { src.Close() })
	st, err := src.Offline(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	d, err := src.Detail(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if len(d.Forks) < 50 || st.Backpack.Events < 10000 {
		tb.Fatalf("bench backpack: %d forks, %d events", len(d.Forks), st.Backpack.Events)
	}
	m := tui.NewModel(src, tui.ModelOptions{Now: tui.FixedNow})
	m = update(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	m = update(m, tui.OfflineMsg(st, "bench"))
	m = update(m, tui.DetailMsg(d))
	return m, d
}

// update applies msg and drops the commands (the benchmarks feed the
// messages those commands would produce themselves).
func update(m tui.Model, msg tea.Msg) tui.Model {
	nm, _ := m.Update(msg)
	return nm.(tui.Model)
}

func stateHomeB(b *testing.B) {
	b.Setenv("XDG_STATE_HOME", b.TempDir())
	b.Setenv("BACKPACK_KEY", "")
}

// BenchmarkView is the time to render one frame at 80x24 of each view of
// a 10,000-event backpack with 50 forks.
func BenchmarkView(b *testing.B) {
	stateHomeB(b)
	bb := makeBenchBackpack(b, 10000, 50)
	m, _ := benchModel(b, bb)
	for v, name := range tui.ViewNames {
		b.Run(name, func(b *testing.B) {
			mv := update(m.InView(v), tui.Key("G")) // the end of the list: the furthest window
			b.ReportAllocs()
			for b.Loop() {
				_ = mv.View()
			}
		})
	}
	b.Run("ForkPane", func(b *testing.B) {
		mv := update(update(m, tui.Key("3")), tui.Key("enter"))
		b.ReportAllocs()
		for b.Loop() {
			_ = mv.View()
		}
	})
}

// BenchmarkDetailMemory reports the heap a loaded detail keeps (the
// model holds one at a time) and the time to load it.
func BenchmarkDetailMemory(b *testing.B) {
	stateHomeB(b)
	bb := makeBenchBackpack(b, 10000, 50)
	src, err := agent.NewTUISource(bb.dir, bb.keyFile)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	var keep *tui.Detail
	var heap float64
	for b.Loop() {
		keep = nil
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		d, err := src.Detail(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		keep = d
		heap = float64(after.HeapAlloc) - float64(before.HeapAlloc)
	}
	b.ReportMetric(heap/(1<<20), "MB-retained")
	b.ReportMetric(float64(len(keep.State)), "state-rows")
}

// BenchmarkKeyDuringIngest measures key-to-frame latency (Update for a
// key press, then View, which is what the renderer draws on its next
// frame) while another goroutine ingests 20,000 events into the same
// backpack in bundles of 1,000, and the model takes the statuses and
// detail loads the agent's subscription would bring meanwhile.
func BenchmarkKeyDuringIngest(b *testing.B) {
	stateHomeB(b)
	bb := makeBenchBackpack(b, 10000, 50)
	m, _ := benchModel(b, bb)
	// "ingest+loads": the ingest runs in this process, as a worst case
	// (the agent ingests in its own process); "loads": only the detail
	// loads the TUI itself runs while the backpack changes.
	b.Run("ingest+loads", func(b *testing.B) {
		// New events every run: they extend the chains as they are now.
		keyLatency(b, bb, m, continuation(b, bb, 20000))
	})
	b.Run("loads", func(b *testing.B) { keyLatency(b, bb, m, nil) })
}

func keyLatency(b *testing.B, bb *benchBackpack, m tui.Model, lines [][]byte) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var ingested atomic.Int64
	statuses := make(chan *status.Status, 1)
	details := make(chan *tui.Detail, 1)
	wg.Go(func() { // the ingest
		if len(lines) == 0 {
			return
		}
		w, err := store.Open(ctx, bb.dir, store.Options{KeyFile: bb.keyFile})
		if err != nil {
			b.Error(err)
			return
		}
		defer w.Close()
		for i := 0; i < len(lines) && ctx.Err() == nil; i += 1000 {
			if _, err := w.Ingest(ctx, lines[i:min(i+1000, len(lines))], "bench bundle"); err != nil {
				if ctx.Err() == nil {
					b.Error(err)
				}
				return
			}
			ingested.Add(int64(min(1000, len(lines)-i)))
			st := &status.Status{}
			st.Backpack.Events = w.Snapshot().EventCount
			select {
			case statuses <- st:
			default:
			}
		}
	})
	wg.Go(func() { // detail loads, as the TUI runs them when the backpack changes
		src, err := agent.NewTUISource(bb.dir, bb.keyFile)
		if err != nil {
			b.Error(err)
			return
		}
		defer src.Close()
		for ctx.Err() == nil {
			d, err := src.Detail(ctx)
			if err != nil {
				return
			}
			select {
			case details <- d:
			default:
			}
		}
	})
	keys := []string{"j", "j", "k", "5", "j", "3", "j", "6", "n", "4", "1"}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		select {
		case st := <-statuses:
			full := *m.Status()
			full.Backpack.Events = st.Backpack.Events
			m = update(m, tui.StatusMsg(&full))
		case d := <-details:
			m = update(m, tui.DetailMsg(d))
		default:
		}
		start := time.Now()
		m = update(m, tui.Key(keys[i%len(keys)]))
		_ = m.View()
		lat = append(lat, time.Since(start))
		i++
	}
	cancel()
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	b.ReportMetric(float64(ingested.Load()), "events-ingested")
}

// contRun makes each continuation's events differ from the last one's.
var contRun int

// continuation signs n more events that extend the backpack's chains.
func continuation(tb testing.TB, bb *benchBackpack, n int) [][]byte {
	tb.Helper()
	contRun++
	b, err := store.Open(context.Background(), bb.dir, store.Options{ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	heads := b.Snapshot().Heads
	b.Close()
	prev := map[string]string{}
	var out [][]byte
	at := time.Date(2026, 7, contRun, 0, 0, 0, 0, time.UTC)
	for i := range n {
		j := i % len(bb.keys)
		actor := fmt.Sprintf("field_team_%d", j+1)
		p := prev[actor]
		if p == "" {
			p = heads[actor].ID
		}
		e, l := tui.Signed(tb, bb.keys[j], actor, p, at.Add(time.Duration(i)*time.Second), fmt.Sprintf("waterpoint_%04d", i%2000), "level", canon.IntValue(int64(i%100)))
		prev[actor] = e.ID
		out = append(out, []byte(l))
	}
	return out
}
