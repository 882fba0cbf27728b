package radiosync_test

import (
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/lora/radiosim"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// TestViewFollowsTheLog: the protocol's view of a device's log, kept up
// to date incrementally, always equals one built from the whole log:
// after appends, after events of a new actor merged in, and after a fork
// that the merge order places before events the view already held (the
// chain's tail changes).
func TestViewFollowsTheLog(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", filepath.Join(t.TempDir(), "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	s, err := radiosim.New(t.Context(), radiosim.Config{Devices: 3, Seed: 7, Offline: 4, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	bp0, bp1, bp2 := s.Backpack(0), s.Backpack(1), s.Backpack(2)
	n0 := s.Node(0)
	check := func(when string) {
		t.Helper()
		if err := radiosync.CheckView(ctx, n0); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	obs := func(i int) canon.Value {
		var p, b canon.ObjectBuilder
		p.Set("subject", canon.StringValue("view_test")).Set("value", canon.IntValue(int64(i)))
		b.Set("type", canon.StringValue("OBSERVATION")).Set("namespace", canon.StringValue("local")).Set("payload", p.Value())
		return b.Value()
	}
	check("at the start")
	for i := range 3 {
		if _, err := bp0.Append(obs(i)); err != nil {
			t.Fatal(err)
		}
		check("after an append")
	}
	// Device 1's chain arrives.
	lines, err := bp1.Delta(ctx, bp0.Frontier())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bp0.Ingest(ctx, lines, "test"); err != nil {
		t.Fatal(err)
	}
	check("after device 1's events")
	// Device 2 writes as device 0's actor after the head it holds, with
	// a timestamp before device 0's newer events: a fork that the merge
	// order puts in the middle of device 0's chain.
	head := bp2.Snapshot().Heads[bp0.Actor()].ID
	fork := obs(99).With("actor", canon.StringValue(bp0.Actor())).With("timestamp_utc", canon.StringValue("2026-03-01T06:00:00.000001Z"))
	if _, err := bp2.Append(fork); err != nil {
		t.Fatal(err)
	}
	lines, err = bp2.Delta(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := bp0.Snapshot().Heads[bp0.Actor()]
	res, err := bp0.Ingest(ctx, lines, "test")
	if err != nil {
		t.Fatal(err)
	}
	// The log was rewritten with the fork before the newer events (and
	// device 0 recorded the fork with an event of its own).
	if after := bp0.Snapshot().Heads[bp0.Actor()]; after.Events <= before.Events || !res.Rewrote || len(res.Forks) == 0 {
		t.Fatalf("the fork was not merged into the chain: %+v -> %+v, %+v", before, after, res)
	}
	t.Logf("device 0's chain after the fork: %d events (head %s after %s)", bp0.Snapshot().Heads[bp0.Actor()].Events, bp0.Snapshot().Heads[bp0.Actor()].ID, head)
	check("after the fork")
	if _, err := bp0.Append(obs(100)); err != nil {
		t.Fatal(err)
	}
	check("after an append on the fork")
}
