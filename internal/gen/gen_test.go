package gen_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/internal/check"
	"github.com/backpack-field/backpack/internal/gen"
)

// TestGeneratedBackpackVerifies: what benchmarks measure is a valid
// backpack with the promised shape.
func TestGeneratedBackpackVerifies(t *testing.T) {
	base := t.TempDir()
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "state"))
	res, err := gen.Backpack(context.Background(), filepath.Join(base, "bp"), filepath.Join(base, "keys"), gen.Options{Events: 600, Actors: 3, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := check.Run(context.Background(), res.Dir, check.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Events != 602 || len(rep.Actors) != 4 || rep.Signatures.Valid != 602 {
		for _, f := range rep.Findings {
			t.Log(f)
		}
		t.Fatalf("generated backpack: ok %v events %d actors %d", rep.OK, rep.Events, len(rep.Actors))
	}
}
