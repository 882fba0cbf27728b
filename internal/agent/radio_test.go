package agent_test

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/backpack-field/backpack/internal/status"
)

// ether joins two serial ports as two KISS TNCs on one channel would: what
// one host writes, the other reads. Each end is a real pty whose slave
// path the agent opens as a serial device. unplug cuts the link of the
// first port until plug.
type ether struct {
	paths   [2]string
	masters [2]*os.File
	mu      sync.Mutex
	cut     bool
}

func newEther(t *testing.T) *ether {
	t.Helper()
	e := &ether{}
	var ttys [2]*os.File
	for i := range 2 {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Skipf("no pty: %v", err)
		}
		// A non-blocking duplicate of the master goes through the
		// poller, so that closing it ends a pending Read.
		fd, err := syscall.Dup(int(ptmx.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		ptmx.Close()
		syscall.SetNonblock(fd, true)
		e.masters[i], e.paths[i], ttys[i] = os.NewFile(uintptr(fd), "/dev/ptmx"), tty.Name(), tty
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for {
				n, err := e.masters[i].Read(buf)
				if err != nil {
					return
				}
				e.mu.Lock()
				cut := e.cut
				e.mu.Unlock()
				if !cut {
					e.masters[1-i].Write(buf[:n])
				}
			}
		})
	}
	t.Cleanup(func() {
		for i := range 2 {
			e.masters[i].Close()
			ttys[i].Close()
		}
		wg.Wait()
	})
	return e
}

func (e *ether) setCut(v bool) {
	e.mu.Lock()
	e.cut = v
	e.mu.Unlock()
}

// TestAgentsOverRadio: two devices with no folder in common sync over
// LoRa: each agent drives a KISS TNC on a serial port (a pty), and the
// two ports share one channel. Events written on each side reach the
// other, the status shows the link, and a channel cut for a while only
// delays convergence.
func TestAgentsOverRadio(t *testing.T) {
	base := shortTemp(t)
	a, b := newDevice(t, base, "a"), newDevice(t, base, "b")
	a.must("init", a.dir, "--actor", "alpha")
	bID := keyIDLine(b.must("join", a.dir, b.dir, "--actor", "bravo"))
	a.must("trust", a.dir, filepath.Join(b.dir, "identity", "keys.json"), "--key-id", bID)
	for i := range 3 {
		appendObs(a, "well_a", i)
		appendObs(b, "well_b", i)
	}
	air := newEther(t)
	start := func(d *device, i int) *running {
		r := d.launch([]string{"--interval", "1h", "--lora", air.paths[i], "--lora-driver", "kiss",
			"--lora-region", "unlimited", "--lora-hello", "2s", "--log-level", "debug"}, nil)
		waitFor(t, 60*time.Second, d.name+" agent up", func() bool {
			s := d.status()
			return s.Agent.Running && s.Agent.Passes > 0
		})
		return r
	}
	ra, rb := start(a, 0), start(b, 1)
	t.Cleanup(func() {
		if t.Failed() {
			// Stop them first (with every goroutine's stack in their
			// logs): their output is still being written.
			ra.dump()
			rb.dump()
			t.Logf("a's agent:\n%s\nb's agent:\n%s", ra.log, rb.log)
			t.Logf("a's radio: %+v\nb's radio: %+v", a.status().Radio, b.status().Radio)
		}
	})
	converged := func(min int) bool {
		sa, sb := a.status(), b.status()
		return sa.Backpack.StateHash == sb.Backpack.StateHash && sa.Backpack.Events == sb.Backpack.Events &&
			sa.Backpack.Events >= min && sa.Held.Quarantine == 0 && sb.Held.Quarantine == 0
	}
	// genesis, its first observation, the trust event, 3 + 3 observations
	waitFor(t, 120*time.Second, "the two devices to converge over the radio", func() bool { return converged(2 + 1 + 6) })
	// The radio's figures in the status are refreshed every few seconds.
	var r *status.RadioStatus
	waitFor(t, 30*time.Second, "a's radio status to show the link", func() bool {
		s := a.status()
		r = s.Radio
		radioPeer := false
		for _, p := range s.Peers {
			radioPeer = radioPeer || p.Medium == "radio"
		}
		return r != nil && r.Link == "up" && r.FramesSent > 0 && r.FramesRecv > 0 && len(r.Peers) == 1 && r.EventsIn > 0 && radioPeer
	})
	t.Logf("converged: %d events; a's radio: %d frames sent, %d received, %d events in", a.status().Backpack.Events, r.FramesSent, r.FramesRecv, r.EventsIn)

	// The channel goes quiet while both write; then it comes back.
	air.setCut(true)
	appendObs(a, "well_a", 10)
	appendObs(b, "well_b", 10)
	time.Sleep(3 * time.Second)
	if converged(2 + 1 + 8) {
		t.Fatal("converged while the channel was cut")
	}
	air.setCut(false)
	waitFor(t, 180*time.Second, "convergence after the channel came back", func() bool { return converged(2 + 1 + 8) })
	ra.stop(t, "a")
	rb.stop(t, "b")
	a.must("verify", a.dir, "-q")
	b.must("verify", b.dir, "-q")
}
