package store

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestLogHasherResume: a hasher resumed at any offset, fed the rest of
// other bytes that share the first ones, gives the other bytes' SHA-256,
// whatever the write sizes.
func TestLogHasherResume(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 20 {
		data := make([]byte, r.IntN(5*markEvery))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		h := newLogHasher()
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(3*markEvery/2))
			h.Write(rest[:k])
			rest = rest[k:]
		}
		if sha256.Sum256(data) != [32]byte(h.Sum(nil)) || h.n != int64(len(data)) || len(h.marks) != len(data)/markEvery {
			t.Fatalf("seed %d round %d: running hash wrong (%d marks for %d bytes)", seed, round, len(h.marks), len(data))
		}
		same := r.Int64N(int64(len(data)) + 1)
		other := append(bytes.Clone(data[:same]), []byte("a changed tail")...)
		g, n := h.resume(same)
		if n > same || n%markEvery != 0 || n < same-markEvery && n < int64(len(h.marks))*markEvery {
			t.Fatalf("seed %d round %d: resumed at %d for a change at %d", seed, round, n, same)
		}
		g.Write(other[n:])
		if sha256.Sum256(other) != [32]byte(g.Sum(nil)) {
			t.Fatalf("seed %d round %d: resumed hash differs from the whole hash", seed, round)
		}
		if len(g.marks) != len(other)/markEvery {
			t.Fatalf("seed %d round %d: %d marks after resuming, want %d", seed, round, len(g.marks), len(other)/markEvery)
		}
	}
}
