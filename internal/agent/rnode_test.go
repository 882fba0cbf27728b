package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/backpack-field/backpack/lora/rnodesim"
)

// rnodePort is an emulated RNode (lora/rnodesim) plugged into a real pty
// whose slave the agent opens as its serial device, through a symlink
// that stays put across unplugging and plugging in again, as
// /dev/ttyUSB0 does for a USB radio.
type rnodePort struct {
	t    *testing.T
	path string // the symlink the agent is given

	mu     sync.Mutex // mu guards the fields below
	dev    *rnodesim.Device
	master *os.File
	tty    *os.File
	done   chan struct{}
}

func newRNodePort(t *testing.T, dir, name string) *rnodePort {
	return &rnodePort{t: t, path: filepath.Join(dir, name)}
}

// plug connects a new emulated device with opts.
func (p *rnodePort) plug(opts rnodesim.Options) *rnodesim.Device {
	p.t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		p.t.Skipf("no pty: %v", err)
	}
	// A non-blocking duplicate of the master goes through the poller,
	// so that closing it ends the device's pending Read (the cable is
	// pulled at once).
	// The duplicate must not leak into the agents this test starts (a
	// master fd open in a child keeps the pty from hanging up when the
	// test closes its own).
	syscall.ForkLock.RLock()
	fd, err := syscall.Dup(int(ptmx.Fd()))
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		p.t.Fatal(err)
	}
	ptmx.Close()
	if err := syscall.SetNonblock(fd, true); err != nil {
		p.t.Fatal(err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	dev := rnodesim.New(master, opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		dev.Run()
	}()
	os.Remove(p.path)
	if err := os.Symlink(tty.Name(), p.path); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.dev, p.master, p.tty, p.done = dev, master, tty, done
	p.mu.Unlock()
	return dev
}

// unplug pulls the cable: the device path goes away and the host's
// reads and writes fail. Safe to call from the device's own goroutine
// (it does not wait for it).
func (p *rnodePort) unplug() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.master == nil {
		return
	}
	os.Remove(p.path)
	p.master.Close()
	p.master = nil
}

// close unplugs and waits for the device's goroutine.
func (p *rnodePort) close() {
	p.mu.Lock()
	done, tty := p.done, p.tty
	p.mu.Unlock()
	p.unplug()
	if done != nil {
		<-done
		tty.Close()
	}
}

// TestAgentsOverRNode: two agents, each on an emulated RNode behind a
// real pty, bring their radios up through the RNode host protocol and
// sync. Then device b's radio is unplugged in the middle of a transfer
// from a (after a's second DATA frame left) and plugged in again: b's
// agent reports the link down, reconnects, runs the bring-up again, and
// the transfer resumes to convergence.
func TestAgentsOverRNode(t *testing.T) {
	base := shortTemp(t)
	a, b := newDevice(t, base, "a"), newDevice(t, base, "b")
	a.must("init", a.dir, "--actor", "alpha")
	bID := keyIDLine(b.must("join", a.dir, b.dir, "--actor", "bravo"))
	a.must("trust", a.dir, filepath.Join(b.dir, "identity", "keys.json"), "--key-id", bID)
	for i := range 3 {
		appendObs(a, "well_a", i)
		appendObs(b, "well_b", i)
	}
	pa, pb := newRNodePort(t, base, "rnode-a"), newRNodePort(t, base, "rnode-b")
	t.Cleanup(pa.close)
	t.Cleanup(pb.close)
	// a's radio pulls b's cable at the second DATA frame it sends once
	// armed.
	var armed atomic.Bool
	var dataFrames atomic.Int32
	var pulled atomic.Bool
	devA := pa.plug(rnodesim.Options{RSSI: -92, SNRRaw: 24, OnTransmit: func(f []byte) {
		if !armed.Load() || len(f) == 0 || f[0]&0x0f != 3 { // radiosync DATA
			return
		}
		if dataFrames.Add(1) == 2 {
			pulled.Store(true)
			pb.unplug()
		}
	}})
	devB := pb.plug(rnodesim.Options{RSSI: -95, SNRRaw: 20})
	rnodesim.Pair(devA, devB)

	start := func(d *device, path string) *running {
		r := d.launch([]string{"--interval", "1h", "--lora", path, "--lora-driver", "rnode",
			"--lora-region", "unlimited", "--lora-hello", "2s", "--log-level", "debug"}, nil)
		waitFor(t, 60*time.Second, d.name+" agent up", func() bool {
			s := d.status()
			return s.Agent.Running && s.Agent.Passes > 0
		})
		return r
	}
	ra, rb := start(a, pa.path), start(b, pb.path)
	stopped := false
	t.Cleanup(func() {
		if t.Failed() {
			if !stopped {
				// Stop them first (with every goroutine's stack in
				// their logs): their output is still being written.
				ra.dump()
				rb.dump()
			}
			t.Logf("a's agent:\n%s\nb's agent:\n%s", ra.log, rb.log)
		}
	})
	converged := func(min int) bool {
		sa, sb := a.status(), b.status()
		return sa.Backpack.StateHash == sb.Backpack.StateHash && sa.Backpack.Events == sb.Backpack.Events &&
			sa.Backpack.Events >= min && sa.Held.Quarantine == 0 && sb.Held.Quarantine == 0
	}
	// Bring-up went through the RNode driver, and frames carry the
	// signal b's device reported for them (-95 dBm, 20/4 dB).
	waitFor(t, 60*time.Second, "b's RNode up with a signal", func() bool {
		r := b.status().Radio
		return r != nil && r.Driver == "rnode" && r.Link == "up" && r.HasSignal && r.RSSI == -95 && r.SNR == 5
	})
	// genesis, its first observation, the trust event, 3 + 3 observations
	waitFor(t, 120*time.Second, "the two devices to converge over the RNodes", func() bool { return converged(2 + 1 + 6) })

	// a writes enough for several transfers; b's radio is pulled in the
	// middle of the first.
	armed.Store(true)
	const more = 40
	for i := range more {
		appendObs(a, "well_a", 100+i)
	}
	waitFor(t, 120*time.Second, "b's cable to be pulled mid-transfer", pulled.Load)
	waitFor(t, 30*time.Second, "b's agent to see its radio gone", func() bool {
		r := b.status().Radio
		return r != nil && r.Link != "up"
	})
	if converged(2 + 1 + 6 + more) {
		t.Fatal("converged although b's radio was unplugged mid-transfer")
	}
	t.Logf("b's radio after the unplug: %q", b.status().Radio.Link)
	pb.close()
	devB = pb.plug(rnodesim.Options{RSSI: -95, SNRRaw: 20})
	rnodesim.Pair(devA, devB)
	waitFor(t, 60*time.Second, "b's RNode up again", func() bool {
		r := b.status().Radio
		return r != nil && r.Link == "up"
	})
	waitFor(t, 180*time.Second, "convergence after b's radio came back", func() bool { return converged(2 + 1 + 6 + more) })
	if !devB.RadioOn() {
		t.Error("b's new RNode: radio not on after the agent's bring-up")
	}
	ra.stop(t, "a")
	rb.stop(t, "b")
	stopped = true
	if !strings.Contains(rb.log.String(), "radio down") {
		t.Errorf("b's agent did not log the radio going down")
	}
	a.must("verify", a.dir, "-q")
	b.must("verify", b.dir, "-q")
}
