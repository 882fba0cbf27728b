package reducer

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

func TestFloatCache(t *testing.T) {
	var c floatCache
	rng := rand.New(rand.NewPCG(7, 7))
	pool := []float64{0.5, 0.35, -0.0, 0, 1e16, 1e-5, 5e-324, math.MaxFloat64, 0.1 + 0.2}
	for range 200 {
		pool = append(pool, math.Float64frombits(rng.Uint64()), float64(rng.IntN(10))/10)
	}
	for range 100_000 {
		f := pool[rng.IntN(len(pool))]
		got, err := c.appendFloat([]byte("x"), f)
		want, werr := canon.AppendFloat([]byte("x"), f)
		if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("%v: cache gives %q (%v), canon %q (%v)", f, got, err, want, werr)
		}
	}
}
