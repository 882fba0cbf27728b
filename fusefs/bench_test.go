package fusefs_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backpack-field/backpack/fusefs"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/store"
)

// Fixtures shared by the benchmarks of one test binary, made once.
var (
	benchOnce sync.Once
	benchRoot string
	benchErr  error
	gen100k   *fixture // gen's 100,000 events by 5 actors (~45 MB log)
	beliefs   *fixture // 100,000 distinct beliefs
)

func benchFixtures(b *testing.B) {
	b.Helper()
	benchOnce.Do(func() {
		benchRoot, benchErr = os.MkdirTemp("", "backpack-fusefs-bench-")
		if benchErr != nil {
			return
		}
		os.Setenv("XDG_STATE_HOME", filepath.Join(benchRoot, "state"))
		os.Setenv("XDG_CONFIG_HOME", filepath.Join(benchRoot, "config"))
		ctx := context.Background()
		var g *gen.Result
		g, benchErr = gen.Backpack(ctx, filepath.Join(benchRoot, "gen"), filepath.Join(benchRoot, "keys"), gen.Options{Events: 100000, Actors: 5, Seed: 1})
		if benchErr != nil {
			return
		}
		gen100k = &fixture{base: benchRoot, dir: g.Dir, key: g.KeyFile}
		beliefs, benchErr = makeBeliefs(filepath.Join(benchRoot, "beliefs"), filepath.Join(benchRoot, "beliefs.key"), 100000)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
}

// makeBeliefs makes a backpack with n beliefs: 1,000 subjects with 100
// predicates each, all local.
func makeBeliefs(dir, key string, n int) (*fixture, error) {
	ctx := context.Background()
	if _, err := store.Init(ctx, dir, store.InitOptions{KeyFile: key, Actor: "surveyor"}); err != nil {
		return nil, err
	}
	bp, err := store.Open(ctx, dir, store.Options{KeyFile: key})
	if err != nil {
		return nil, err
	}
	defer bp.Close()
	bodies := make([]canon.Value, 0, n)
	for i := range n {
		bodies = append(bodies, body("OBSERVATION", fmt.Sprintf("household_%04d", i/100), fmt.Sprintf("q%02d", i%100), canon.IntValue(int64(i)), 0.9))
	}
	if _, err := bp.AppendBatch(bodies); err != nil {
		return nil, err
	}
	return &fixture{dir: dir, key: key}, nil
}

func cleanupBench() {
	if benchRoot != "" {
		os.RemoveAll(benchRoot)
	}
}

// readAll reads a file sequentially with 1 MiB reads and returns the size.
func readAll(b *testing.B, p string, buf []byte) int64 {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadEvents reads the 100k-event events.ndjson (~45 MB) from
// the disk (page cache warm) and through the mount in each read mode.
func BenchmarkReadEvents(b *testing.B) {
	needFUSE(b)
	benchFixtures(b)
	disk := filepath.Join(gen100k.dir, store.EventsPath)
	fi, err := os.Stat(disk)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	run := func(b *testing.B, p string) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			if n := readAll(b, p, buf); n != fi.Size() {
				b.Fatalf("read %d bytes, want %d", n, fi.Size())
			}
		}
	}
	b.Run("disk", func(b *testing.B) { run(b, disk) })
	for _, mode := range []struct {
		name string
		opts agent.MountOptions
	}{
		{"mount-cache", agent.MountOptions{ReadMode: fusefs.ReadCache}},
		{"mount-plain", agent.MountOptions{ReadMode: fusefs.ReadPlain}},
		{"mount-direct", agent.MountOptions{ReadMode: fusefs.ReadDirect}},
		{"mount-passthrough-default", agent.MountOptions{ReadMode: fusefs.ReadPassthrough}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			_, mnt := mountFixture(b, gen100k, mode.opts)
			p := filepath.Join(mnt, store.EventsPath)
			readAll(b, p, buf) // the first read (fills the cache in keepcache mode)
			run(b, p)
		})
	}
}

// BenchmarkLsR100kBeliefs runs `ls -R` over state/ holding 100,000
// beliefs (1,000 subjects directories of 100 files), through the mount.
func BenchmarkLsR100kBeliefs(b *testing.B) {
	needFUSE(b)
	benchFixtures(b)
	_, mnt := mountFixture(b, beliefs, agent.MountOptions{})
	for b.Loop() {
		out, err := exec.Command("ls", "-R", filepath.Join(mnt, "state")).Output()
		if err != nil {
			b.Fatal(err)
		}
		if n := strings.Count(string(out), "\nq"); n < 100000 {
			b.Fatalf("ls -R listed %d belief files", n)
		}
	}
}

// BenchmarkMountView builds a view (what every change costs before the
// mount shows it) of the 100k-event and the 100k-belief backpacks.
func BenchmarkMountView(b *testing.B) {
	benchFixtures(b)
	for name, fx := range map[string]*fixture{"gen100k": gen100k, "beliefs100k": beliefs} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				src, err := agent.NewMountSource(fx.dir, agent.MountSourceOptions{})
				if err != nil {
					b.Fatal(err)
				}
				v, err := fusefs.NewView(context.Background(), fx.dir, src)
				if err != nil {
					b.Fatal(err)
				}
				v.Close()
				src.Close()
			}
		})
	}
}

// BenchmarkInboxDrop measures the time from writing a bundle (one new
// event) into inbox/ to reading the new value through the mount, on a
// small backpack and on the 100k-event one.
func BenchmarkInboxDrop(b *testing.B) {
	needFUSE(b)
	benchFixtures(b)
	small := newFixture(b)
	for name, fx := range map[string]*fixture{"small": small, "gen100k": copyFixture(b, gen100k)} {
		b.Run(name, func(b *testing.B) {
			_, mnt := mountFixture(b, fx, agent.MountOptions{})
			rep := filepath.Join(b.TempDir(), "rep")
			if err := os.CopyFS(rep, os.DirFS(fx.dir)); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				want := fmt.Sprintf("%d\n", i)
				data := exportFrom(b, fx, rep, body("OBSERVATION", fmt.Sprintf("drop_%d", i), "n", canon.IntValue(int64(i)), 0.99))
				name := filepath.Join(mnt, "inbox", fmt.Sprintf("b%d.bpb", i))
				b.StartTimer()
				start := time.Now()
				if err := os.WriteFile(name, data, 0o644); err != nil {
					b.Fatal(err)
				}
				for {
					got, _ := os.ReadFile(filepath.Join(mnt, fmt.Sprintf("state/local/drop_%d/n", i)))
					if string(got) == want {
						break
					}
					if time.Since(start) > 30*time.Second {
						b.Fatalf("value not visible: %q", got)
					}
				}
			}
		})
	}
}

func copyFixture(b *testing.B, fx *fixture) *fixture {
	dir := filepath.Join(b.TempDir(), "bp")
	if err := os.CopyFS(dir, os.DirFS(fx.dir)); err != nil {
		b.Fatal(err)
	}
	return &fixture{base: fx.base, dir: dir, key: fx.key}
}

// BenchmarkViewerAfterAppend builds the view that follows one event
// appended (through the mount's source, untimed) to the 100k-event
// backpack: what a change costs the mount before it shows it, once the
// view is updated rather than rebuilt.
func BenchmarkViewerAfterAppend(b *testing.B) {
	benchFixtures(b)
	fx := copyFixture(b, gen100k)
	ctx := context.Background()
	src, err := agent.NewMountSource(fx.dir, agent.MountSourceOptions{KeyFile: fx.key})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	vw := fusefs.NewViewer(fx.dir, src)
	v, err := vw.View(ctx)
	if err != nil {
		b.Fatal(err)
	}
	v.Close()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		if _, err := src.Record(ctx, body("OBSERVATION", fmt.Sprintf("append_%d", i), "n", canon.IntValue(int64(i)), 0.9)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		v, err := vw.View(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if v.Info.Full {
			b.Fatal("the view was built from scratch")
		}
		v.Close()
	}
}
