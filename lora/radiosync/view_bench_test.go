package radiosync_test

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
	"github.com/backpack-field/backpack/lora/radiosync"
)

// bigFixture is a generated 100k-event backpack (5 actors), made once
// per test binary and removed by TestMain.
var (
	bigOnce sync.Once
	bigRes  *gen.Result
	bigErr  error
	bigDir  string
)

func bigBackpack(b *testing.B) *gen.Result {
	b.Helper()
	bigOnce.Do(func() {
		bigDir, bigErr = os.MkdirTemp("", "radiosync-big-")
		if bigErr != nil {
			return
		}
		b.Logf("generating a 100k-event backpack")
		bigRes, bigErr = gen.Backpack(context.Background(), filepath.Join(bigDir, "bp"), filepath.Join(bigDir, "keys"), gen.Options{Events: 100_000, Actors: 5, Seed: 1})
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigRes
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// BenchmarkViewCatchUp100k: a device with a 100k-event backpack appends
// one event; the time is what its protocol's view of the log takes to
// catch up (what a HELLO, FRONTIER or batch after a change waits for).
func BenchmarkViewCatchUp100k(b *testing.B) {
	res := bigBackpack(b)
	b.Setenv("XDG_STATE_HOME", filepath.Join(bigDir, "state"))
	bp, err := store.Open(b.Context(), res.Dir, store.Options{KeyFile: res.KeyFile})
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	n, err := radiosync.NewNode(bp, radiosync.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := radiosync.CatchUp(b.Context(), n); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		var body canon.ObjectBuilder
		var p canon.ObjectBuilder
		p.Set("subject", canon.StringValue(fmt.Sprintf("bench_%d", i))).Set("value", canon.IntValue(int64(i)))
		body.Set("type", canon.StringValue("OBSERVATION")).Set("namespace", canon.StringValue("local")).Set("payload", p.Value())
		if _, err := bp.Append(body.Value()); err != nil {
			b.Fatal(err)
		}
		i++
		b.StartTimer()
		got, err := radiosync.CatchUp(b.Context(), n)
		if err != nil {
			b.Fatal(err)
		}
		if want := bp.Snapshot().EventCount; got != want {
			b.Fatalf("view holds %d events, the log %d", got, want)
		}
	}
}
