package agent_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bplog "github.com/backpack-field/backpack/log"
)

// kill sends SIGKILL and waits for the process to be gone.
func (r *running) kill() {
	r.cmd.Process.Kill()
	<-r.done
}

// dump stops the agent with SIGQUIT, so that its log ends with every
// goroutine's stack (for a test that failed waiting on it), and kills it
// if that does not stop it.
func (r *running) dump() {
	r.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.kill()
	}
}

// startQuiet starts an agent without waiting for it to answer (a kill
// may come before it does).
func (d *device) startQuiet(peers ...string) *running {
	d.t.Helper()
	return d.launch([]string{"--interval", "1s"}, peers)
}

// launch starts `backpack agent` for d with flags and peer folders; the
// test's cleanup kills it if it still runs.
func (d *device) launch(flags, peers []string) *running {
	d.t.Helper()
	args := append([]string{"agent", d.dir}, flags...)
	for _, p := range peers {
		args = append(args, "--peer", p)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append([]string(nil), d.env...), "GOTRACEBACK=all") // dump: every goroutine
	r := &running{cmd: cmd, log: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	d.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// eventIDs returns the event ids of d's log, in order, and the number of
// lines.
func eventIDs(t *testing.T, d *device) ([]string, int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dir, "events", "events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	lines := 0
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		lines++
		if e, err := bplog.Parse(l); err == nil {
			ids = append(ids, e.ID)
		}
	}
	return ids, lines
}

// TestAgentsKilled: two devices sync through a peer folder while both
// keep writing; their agents are killed with SIGKILL at random moments
// (in the middle of imports, exports and cache writes) and restarted.
// In the end no event is lost or duplicated, both verify, and they
// converge.
func TestAgentsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills agents many times; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (set BACKPACK_KILL_SEED to repeat)", seed)
	if v := os.Getenv("BACKPACK_KILL_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	base := shortTemp(t)
	a, b := newDevice(t, base, "a"), newDevice(t, base, "b")
	peer := filepath.Join(base, "p")
	if err := os.MkdirAll(peer, 0o755); err != nil {
		t.Fatal(err)
	}
	a.must("init", a.dir, "--actor", "alpha")
	bID := keyIDLine(b.must("join", a.dir, b.dir, "--actor", "bravo"))
	a.must("trust", a.dir, filepath.Join(b.dir, "identity", "keys.json"), "--key-id", bID)

	// Batches of events written while the agents run (and die).
	batch := func(d *device, round, n int) {
		var sb strings.Builder
		for i := range n {
			fmt.Fprintf(&sb, `{"type":"OBSERVATION","payload":{"subject":"%s_site_%d","predicate":"count","value":%d}}`+"\n", d.name, i%40, round*1000+i)
		}
		f := filepath.Join(base, d.name+".events")
		if err := os.WriteFile(f, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		d.mustLocked("append", d.dir, "--event", f)
	}
	written := 0
	ra, rb := a.startQuiet(peer), b.startQuiet(peer)
	const kills = 12
	for k := range kills {
		batch(a, k, 150)
		batch(b, k, 100)
		written += 250
		time.Sleep(time.Duration(50+rng.IntN(700)) * time.Millisecond)
		switch rng.IntN(3) {
		case 0:
			ra.kill()
			ra = a.startQuiet(peer)
		case 1:
			rb.kill()
			rb = b.startQuiet(peer)
		default:
			ra.kill()
			rb.kill()
			ra, rb = a.startQuiet(peer), b.startQuiet(peer)
		}
	}
	// Let them finish.
	waitFor(t, 180*time.Second, "both devices to converge", func() bool {
		sa, sb := a.status(), b.status()
		return sa.Agent.Running && sb.Agent.Running && sa.Backpack.StateHash == sb.Backpack.StateHash &&
			sa.Backpack.Events == sb.Backpack.Events && sa.Backpack.Events >= written
	})
	ra.stop(t, "a")
	rb.stop(t, "b")
	for _, d := range []*device{a, b} {
		d.must("verify", d.dir, "-q")
		ids, lines := eventIDs(t, d)
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s: event %s twice in the log", d.name, id)
			}
			seen[id] = true
		}
		if lines != len(ids) {
			t.Errorf("%s: %d lines, %d events", d.name, lines, len(ids))
		}
		// genesis + key events + what was written
		if len(ids) < written+2 {
			t.Errorf("%s: %d events, at least %d expected", d.name, len(ids), written+2)
		}
		t.Logf("%s: %d events, quarantine/pending: %s", d.name, len(ids), strings.TrimSpace(d.must("status", d.dir)))
	}
	idsA, _ := eventIDs(t, a)
	idsB, _ := eventIDs(t, b)
	if strings.Join(idsA, ",") != strings.Join(idsB, ",") {
		t.Errorf("the two logs differ in order or content")
	}
	ka, _ := os.ReadFile(filepath.Join(a.dir, "identity", "keys.json"))
	kb, _ := os.ReadFile(filepath.Join(b.dir, "identity", "keys.json"))
	if !bytes.Equal(ka, kb) {
		t.Errorf("identity/keys.json differs:\n%s\n%s", ka, kb)
	}
}
