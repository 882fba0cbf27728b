package radiosync_test

import (
	"github.com/backpack-field/backpack/internal/canon"
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosim"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// pair drives two Nodes by hand on a virtual clock: every frame one
// sends reaches the other unless drop says otherwise.
type pair struct {
	t     *testing.T
	s     *radiosim.Sim
	nodes [2]*radiosync.Node
	now   time.Time
	drop  func(from int, f []byte) bool
}

func newPair(t *testing.T, offline int) *pair {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", filepath.Join(t.TempDir(), "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	s, err := radiosim.New(t.Context(), radiosim.Config{Devices: 2, Seed: 31, OfflineByDevice: []int{offline, 1}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := &pair{t: t, s: s, now: radiosim.Start}
	for i := range 2 {
		p.restart(i)
	}
	return p
}

// restart replaces device i's Node with a new one, as a restarted agent
// makes: nothing of the old one's memory survives.
func (p *pair) restart(i int) {
	p.t.Helper()
	n, err := radiosync.NewNode(p.s.Backpack(i), radiosync.Options{HelloEvery: 5 * time.Minute})
	if err != nil {
		p.t.Fatal(err)
	}
	n.Start(p.now)
	p.nodes[i] = n
}

// transfer describes the transfer device i has in flight ("" for none).
func (p *pair) transfer(i int) string {
	if ps := p.nodes[i].Status(p.now).Peers; len(ps) > 0 {
		return ps[0].Transfer
	}
	return ""
}

func (p *pair) converged() bool {
	return p.s.Backpack(0).Frontier().Digest() == p.s.Backpack(1).Frontier().Digest()
}

// run pumps frames until until(p) holds or d of virtual time passes; it
// reports whether until held.
func (p *pair) run(d time.Duration, until func() bool) bool {
	end := p.now.Add(d)
	ctx := p.t.Context()
	for p.now.Before(end) {
		if until() {
			return true
		}
		sent := false
		next := end
		for i, n := range p.nodes {
			n.Tick(ctx, p.now)
			for {
				f, wait := n.NextFrame(p.now)
				if f == nil {
					if wait > 0 && p.now.Add(wait).Before(next) {
						next = p.now.Add(wait)
					}
					break
				}
				sent = true
				if p.drop == nil || !p.drop(i, f) {
					p.nodes[1-i].HandleFrame(ctx, p.now, lora.Frame{Payload: f})
				}
			}
			if dl := n.Deadline(); dl.After(p.now) && dl.Before(next) {
				next = dl
			}
		}
		if sent {
			p.now = p.now.Add(time.Second)
		} else {
			p.now = next.Add(time.Millisecond)
		}
	}
	return until()
}

// TestSenderRestartAfterTransfer: a sender that restarts after a
// completed transfer starts its transfers afresh; the receiver must not
// take the new transfer for the old one it finished (and answer "done"
// without ingesting it).
func TestSenderRestartAfterTransfer(t *testing.T) {
	p := newPair(t, 3)
	if !p.run(2*time.Hour, p.converged) {
		t.Fatal("no convergence before the restart")
	}
	p.restart(0)
	if _, err := p.s.Backpack(0).Append(obsBody("after_restart", 1)); err != nil {
		t.Fatal(err)
	}
	if !p.run(2*time.Hour, p.converged) {
		t.Fatalf("no convergence within 2 h after the sender restarted: receiver %+v", p.nodes[1].Counters())
	}
}

// TestSenderRestartMidTransfer: the sender restarts while the receiver
// holds part of a transfer, and its first transfer after the restart
// carries other events (a new one is newest): the receiver must not mix
// the two transfers' fragments.
func TestSenderRestartMidTransfer(t *testing.T) {
	p := newPair(t, 20)
	// Only the first fragment of each DATA frame gets through.
	p.drop = func(from int, f []byte) bool {
		idx, ok := radiosync.DataFragment(f)
		return from == 0 && ok && idx > 0
	}
	half := func() bool {
		st := p.nodes[1].Status(p.now)
		return len(st.Peers) == 1 && st.Peers[0].Receiving > 0
	}
	if !p.run(2*time.Hour, half) {
		t.Fatal("the receiver never held half a transfer")
	}
	t.Logf("sender before the restart: %s", p.transfer(0))
	p.drop = nil
	if _, err := p.s.Backpack(0).Append(obsBody("after_restart", 1)); err != nil {
		t.Fatal(err)
	}
	p.restart(0)
	p.run(time.Hour, func() bool { return p.transfer(0) != "" })
	t.Logf("sender after the restart: %s", p.transfer(0))
	if !p.run(3*time.Hour, p.converged) {
		t.Fatalf("no convergence within 3 h after the sender restarted: receiver %+v", p.nodes[1].Counters())
	}
	t.Logf("receiver %+v", p.nodes[1].Counters())
	if c := p.nodes[1].Counters(); c.BadFrames != 0 {
		t.Errorf("the receiver saw %d bad frames (mixed transfers): %+v", c.BadFrames, c)
	}
}

func obsBody(subject string, v int) canon.Value {
	var p, b canon.ObjectBuilder
	p.Set("subject", canon.StringValue(subject)).Set("value", canon.IntValue(int64(v)))
	b.Set("type", canon.StringValue("OBSERVATION")).Set("namespace", canon.StringValue("local")).Set("payload", p.Value())
	return b.Value()
}
