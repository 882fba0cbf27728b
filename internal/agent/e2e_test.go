package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/status"
)

// bin is the backpack binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpbin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "backpack")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/backpack").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if genRoot != "" {
		os.RemoveAll(genRoot)
	}
	os.Exit(code)
}

// device is one replica with its own XDG directories.
type device struct {
	t    *testing.T
	name string
	dir  string // the backpack
	env  []string
}

// shortTemp is a temp dir with a short path: unix socket paths are
// limited to 107 bytes and t.TempDir's are long.
func shortTemp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "bp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newDevice(t *testing.T, base, name string) *device {
	home := filepath.Join(base, name)
	return &device{t: t, name: name, dir: filepath.Join(home, "bp"), env: append(os.Environ(),
		"XDG_STATE_HOME="+filepath.Join(home, "s"), "XDG_CONFIG_HOME="+filepath.Join(home, "c"), "BACKPACK_KEY=")}
}

// run runs the binary as this device and returns its output and exit code.
func (d *device) run(args ...string) (string, int) {
	d.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = d.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		d.t.Fatal(err)
	}
	return out.String(), 0
}

func (d *device) must(args ...string) string {
	d.t.Helper()
	out, code := d.run(args...)
	if code != 0 {
		d.t.Fatalf("%s: backpack %v: exit %d\n%s", d.name, args, code, out)
	}
	return out
}

// mustLocked runs a writing command, retrying while an agent's pass holds
// the backpack's lock (exit 4).
func (d *device) mustLocked(args ...string) string {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, code := d.run(args...)
		if code == 0 {
			return out
		}
		if code != 4 || time.Now().After(deadline) {
			d.t.Fatalf("%s: backpack %v: exit %d\n%s", d.name, args, code, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *device) status() *status.Status {
	d.t.Helper()
	out := d.must("status", d.dir, "--json")
	s := &status.Status{}
	if err := json.Unmarshal([]byte(out), s); err != nil {
		d.t.Fatalf("%s: status: %v\n%s", d.name, err, out)
	}
	return s
}

// running is an agent subprocess.
type running struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan error
}

func (d *device) startAgent(peers ...string) *running {
	d.t.Helper()
	r := d.launch([]string{"--interval", "2s", "--log-level", "debug"}, peers)
	// Wait for its socket to answer.
	waitFor(d.t, 60*time.Second, d.name+" agent up", func() bool {
		s := d.status()
		return s.Agent.Running && s.Agent.Passes > 0
	})
	return r
}

// stop sends SIGTERM and requires exit 0.
func (r *running) stop(t *testing.T, name string) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("%s agent: %v\n%s", name, err, r.log)
		}
	case <-time.After(60 * time.Second):
		r.cmd.Process.Kill()
		t.Fatalf("%s agent did not stop on SIGTERM\n%s", name, r.log)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var keyIDLine = func(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "key" && f[1] == "id" {
			return f[2]
		}
	}
	return ""
}

func appendObs(d *device, subject string, v int) {
	d.mustLocked("append", d.dir, "--type", "OBSERVATION", "--subject", subject, "--predicate", "level", "--value", fmt.Sprint(v))
}

// TestThreeDevices: A and B share P1, B and C share P2; A and C meet only
// through B.
func TestThreeDevices(t *testing.T) {
	base := shortTemp(t)
	a, b, c := newDevice(t, base, "a"), newDevice(t, base, "b"), newDevice(t, base, "c")
	p1, p2 := filepath.Join(base, "p1"), filepath.Join(base, "p2")
	for _, p := range []string{p1, p2} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a.must("init", a.dir, "--actor", "alpha")
	bID := keyIDLine(b.must("join", a.dir, b.dir, "--actor", "bravo"))
	cID := keyIDLine(c.must("join", a.dir, c.dir, "--actor", "charlie"))
	if bID == "" || cID == "" {
		t.Fatal("join printed no key id")
	}
	a.must("trust", a.dir, filepath.Join(b.dir, "identity", "keys.json"), "--key-id", bID)
	a.must("trust", a.dir, filepath.Join(c.dir, "identity", "keys.json"), "--key-id", cID)

	ra := a.startAgent(p1)
	rb := b.startAgent(p1, p2)
	rc := c.startAgent(p2)

	// A second agent on A is refused.
	out, code := a.run("agent", a.dir, "--peer", p1)
	if code != 4 || !strings.Contains(out, "another agent is already running") {
		t.Fatalf("second agent: exit %d\n%s", code, out)
	}

	for i := range 3 {
		appendObs(a, "well_a", i)
		appendObs(b, "well_b", i)
		appendObs(c, "well_c", i)
	}
	devs := []*device{a, b, c}
	converged := func() bool {
		var ss []*status.Status
		for _, d := range devs {
			ss = append(ss, d.status())
		}
		for _, s := range ss[1:] {
			if s.Backpack.Events != ss[0].Backpack.Events || s.Backpack.StateHash != ss[0].Backpack.StateHash {
				return false
			}
		}
		// 2 (genesis) + 2 trust events + 9 observations at least.
		return ss[0].Backpack.Events >= 13
	}
	waitFor(t, 180*time.Second, "three devices to converge", converged)
	sb := b.status()
	t.Logf("converged: %d events, state %s; B: %s", sb.Backpack.Events, sb.Backpack.StateHash, sb.Verdict)
	if len(sb.Peers) != 2 || !strings.Contains(sb.Verdict, "in sync") {
		t.Errorf("B's status: peers %+v, verdict %q", sb.Peers, sb.Verdict)
	}
	for _, p := range sb.Peers {
		if p.BundlesIn == 0 || p.BundlesOut == 0 {
			t.Errorf("B's peer %s (%s): %d bundles in, %d out; both wrote and read", p.KeyID, p.Actor, p.BundlesIn, p.BundlesOut)
		}
	}

	ra.stop(t, "a")
	rb.stop(t, "b")
	rc.stop(t, "c")
	for _, d := range devs {
		d.must("verify", d.dir, "-q")
		s := d.status()
		if s.Agent.Running {
			t.Errorf("%s: status says an agent runs after it stopped", d.name)
		}
	}
	if out := a.must("status", a.dir); !strings.Contains(out, "not running") {
		t.Errorf("status without agent: %s", out)
	}

	// A fork on A: two events after the same predecessor by A's actor.
	plantFork(t, a)
	ra = a.startAgent(p1)
	rb = b.startAgent(p1, p2)
	rc = c.startAgent(p2)
	waitFor(t, 180*time.Second, "the fork to reach C", func() bool { return c.status().Held.Forks > 0 })
	t.Logf("C after the fork: %s", c.status().Verdict)
	if out := c.must("forks", c.dir); !strings.Contains(out, "alpha") {
		t.Errorf("forks on C: %s", out)
	}
	ra.stop(t, "a")
	rb.stop(t, "b")
	rc.stop(t, "c")
}

// plantFork appends, with plain file I/O, an event by A's actor whose
// predecessor is not A's head but the event before it.
func plantFork(t *testing.T, a *device) {
	t.Helper()
	keyFile := filepath.Join(filepath.Dir(a.dir), "c", "backpack", "keys")
	entries, err := os.ReadDir(keyFile)
	if err != nil || len(entries) != 1 {
		t.Fatalf("key dir: %v %v", entries, err)
	}
	line := signedEvent(t, a, filepath.Join(keyFile, entries[0].Name()), true)
	appendLine(t, a, line)
}
