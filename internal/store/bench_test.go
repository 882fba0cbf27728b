package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/store"
)

var (
	big100kOnce sync.Once
	big100k     *gen.Result
	big100kErr  error
	benchRoot   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRoot != "" {
		os.RemoveAll(benchRoot)
	}
	os.Exit(code)
}

// backpack100k generates, once per test binary, a 100,000-event backpack
// with 5 actors and returns a fresh copy of it for the caller.
func backpack100k(b *testing.B) (dir, key string) {
	b.Helper()
	big100kOnce.Do(func() {
		benchRoot, big100kErr = os.MkdirTemp("", "backpack-bench-")
		if big100kErr != nil {
			return
		}
		os.Setenv("XDG_STATE_HOME", filepath.Join(benchRoot, "state"))
		big100k, big100kErr = gen.Backpack(context.Background(), filepath.Join(benchRoot, "src"), filepath.Join(benchRoot, "keys"), gen.Options{Events: 100000, Actors: 5, Seed: 1})
	})
	if big100kErr != nil {
		b.Fatal(big100kErr)
	}
	dir = filepath.Join(b.TempDir(), "bp")
	if err := os.CopyFS(dir, os.DirFS(big100k.Dir)); err != nil {
		b.Fatal(err)
	}
	return dir, big100k.KeyFile
}

// BenchmarkOpenReplay100k: open a 100k-event backpack without a state
// cache: parse every line and reduce it (the "full reduce" figure,
// including parsing).
func BenchmarkOpenReplay100k(b *testing.B) {
	dir, _ := backpack100k(b)
	os.Remove(filepath.Join(dir, store.CachePath))
	b.ReportAllocs()
	for b.Loop() {
		r, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		if r.Snapshot().EventCount != 100002 {
			b.Fatal(r.Snapshot().EventCount)
		}
		r.Close()
	}
}

// BenchmarkOpenCached100k: open the same backpack with its state cache.
func BenchmarkOpenCached100k(b *testing.B) {
	dir, _ := backpack100k(b)
	b.ReportAllocs()
	for b.Loop() {
		r, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkAppend100k: append one signed event to an open 100k-event
// backpack: sign, append + fsync, incremental reducer and state hash,
// manifest + Merkle root + manifest.sig rebuilt and written atomically.
func BenchmarkAppend100k(b *testing.B) {
	dir, key := backpack100k(b)
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: key, CacheEvery: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if _, err := bp.Append(observation(fmt.Sprintf("waterpoint_%04d", i%2000), "status", canon.StringValue("working"), 0.8)); err != nil {
			b.Fatal(err)
		}
	}
}
