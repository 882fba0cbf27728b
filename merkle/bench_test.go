package merkle_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/merkle"
)

// benchEntries returns n sorted entries with realistic paths.
func benchEntries(n int) []merkle.Entry {
	es := make([]merkle.Entry, n)
	for i := range es {
		h := merkle.Sum(fmt.Appendf(nil, "%d", i))
		es[i] = merkle.Entry{Path: fmt.Sprintf("artifacts/cas/%s", h), SHA256: h.String(), Size: int64(i * 37)}
	}
	merkle.SortEntries(es)
	return es
}

func BenchmarkRoot(b *testing.B) {
	const n = 10_000
	es := benchEntries(n)
	leaves := make([][]byte, n)
	for i, e := range es {
		l, err := e.Leaf()
		if err != nil {
			b.Fatal(err)
		}
		leaves[i] = l
	}
	b.Run("leaves=10k", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			merkle.Root(leaves)
		}
	})
	b.Run("entries=10k", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := merkle.RootOf(es); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkManifest(b *testing.B) {
	m, err := merkle.NewManifest("2026-01-02T03:04:05.123456+00:00", benchEntries(10_000))
	if err != nil {
		b.Fatal(err)
	}
	data, err := m.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode=10k", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := m.Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse=10k", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := merkle.ParseManifest(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBuild builds a backpack-like directory holding a 45 MB event
// log and a dozen small files, hashing everything or with a warm cache.
func BenchmarkBuild(b *testing.B) {
	dir := b.TempDir()
	big := make([]byte, 45_000_000)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	total := int64(len(big))
	writeFile(b, dir, "events/events.ndjson", string(big))
	for i := range 12 {
		content := fmt.Sprintf("small file %d\n", i)
		writeFile(b, dir, fmt.Sprintf("policies/p%02d.json", i), content)
		total += int64(len(content))
	}
	if err := os.MkdirAll(filepath.Join(dir, "artifacts", "cas"), 0o755); err != nil {
		b.Fatal(err)
	}

	b.Run("cache=none", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(total)
		for b.Loop() {
			if _, err := merkle.Build(dir, merkle.BuildOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cache=warm", func(b *testing.B) {
		var cache merkle.MapCache
		if _, err := merkle.Build(dir, merkle.BuildOptions{Cache: &cache}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(total)
		for b.Loop() {
			res, err := merkle.Build(dir, merkle.BuildOptions{Cache: &cache})
			if err != nil || res.Hashed != 0 {
				b.Fatalf("hashed %d, %v", res.Hashed, err)
			}
		}
	})
}
