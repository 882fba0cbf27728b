package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/fusefs"
)

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Getenv("BACKPACK_TEST_FUSE") == "0" {
		t.Skip("BACKPACK_TEST_FUSE=0: FUSE tests disabled")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse (%v): FUSE mount tests need it", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil && os.Geteuid() != 0 {
		t.Skip("not root and no fusermount3: cannot mount")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDaemon runs the binary in the background; stop sends SIGTERM and
// returns the exit error.
func startDaemon(t *testing.T, c child, state string, args ...string) (out *syncBuffer, stop func() error) {
	t.Helper()
	cmd := c.cmd(t.Context(), state, args...)
	out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var werr error
	stop = func() error {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case werr = <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				werr = errors.New("did not stop on SIGTERM")
			}
		})
		return werr
	}
	t.Cleanup(func() { stop() })
	return out, stop
}

func TestMountCommand(t *testing.T) {
	needFUSE(t)
	bin := buildBackpack(t)
	base := t.TempDir()
	c := child{bin: bin, config: filepath.Join(base, "config")}
	state := filepath.Join(base, "state")
	dir, mnt := filepath.Join(base, "bp"), filepath.Join(base, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, code := c.run(t, state, "init", dir, "--actor", "camp"); code != 0 {
		t.Fatalf("init: %s", out)
	}
	if out, code := c.run(t, state, "append", dir, "--type", "OBSERVATION", "--subject", "door_01", "--predicate", "status", "--value", `"open"`); code != 0 {
		t.Fatalf("append: %s", out)
	}
	out, stop := startDaemon(t, c, state, "mount", dir, mnt)
	waitFor(t, "mounted", func() error {
		if fusefs.MountType(mnt) != "fuse.backpack" {
			return fmt.Errorf("not mounted: %s", out)
		}
		return nil
	})
	got, err := os.ReadFile(filepath.Join(mnt, "state/local/door_01/status"))
	if err != nil || string(got) != "\"open\"\n" {
		t.Fatalf("cat state/local/door_01/status: %q %v", got, err)
	}
	// A command writes while the mount runs; the mount follows.
	if o, code := c.run(t, state, "append", dir, "--type", "OBSERVATION", "--subject", "door_02", "--predicate", "status", "--value", `"shut"`); code != 0 {
		t.Fatalf("append: %s", o)
	}
	waitFor(t, "the mount follows", func() error {
		got, err := os.ReadFile(filepath.Join(mnt, "state/local/door_02/status"))
		if err != nil || string(got) != "\"shut\"\n" {
			return fmt.Errorf("%q %v", got, err)
		}
		return nil
	})
	// An observation through new/ is signed with the device key.
	if err := os.WriteFile(filepath.Join(mnt, "new/w.json"), []byte(`{"subject":"well","predicate":"level","value":3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, _ := c.run(t, state, "log", dir); !strings.Contains(o, "well:level = 3") {
		t.Fatalf("log after new/: %s", o)
	}
	if err := stop(); err != nil {
		t.Fatalf("mount on SIGTERM: %v\n%s", err, out)
	}
	if typ := fusefs.MountType(mnt); typ != "" {
		t.Fatalf("still mounted after SIGTERM (%s)", typ)
	}
	if !strings.Contains(out.String(), "unmounted") {
		t.Errorf("output: %s", out)
	}
}

func TestAgentMount(t *testing.T) {
	needFUSE(t)
	bin := buildBackpack(t)
	base := t.TempDir()
	c := child{bin: bin, config: filepath.Join(base, "config")}
	// The agent's socket path must stay under 108 bytes.
	state, err := os.MkdirTemp("", "bps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	dir, mnt, peer := filepath.Join(base, "bp"), filepath.Join(base, "mnt"), filepath.Join(base, "peer")
	os.Mkdir(mnt, 0o755)
	os.Mkdir(peer, 0o755)
	if out, code := c.run(t, state, "init", dir, "--actor", "camp"); code != 0 {
		t.Fatalf("init: %s", out)
	}
	out, stop := startDaemon(t, c, state, "agent", dir, "--peer", peer, "--mount", mnt, "--interval", "1s")
	waitFor(t, "agent status in the mount", func() error {
		got, err := os.ReadFile(filepath.Join(mnt, "status.json"))
		if err != nil || !strings.Contains(string(got), `"running": true`) {
			return fmt.Errorf("%v: %s\n%s", err, got, out)
		}
		return nil
	})
	// A write through the mount waits for the agent's passes.
	if err := os.WriteFile(filepath.Join(mnt, "new/obs.json"), []byte(`{"subject":"gate","predicate":"open","value":true}`), 0o644); err != nil {
		t.Fatalf("new/ under the agent: %v\n%s", err, out)
	}
	if err := stop(); err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	if typ := fusefs.MountType(mnt); typ != "" {
		t.Fatalf("still mounted after the agent stopped (%s)", typ)
	}

	// When the mount fails, the agent runs without it.
	out, stop = startDaemon(t, c, state, "agent", dir, "--peer", peer, "--mount", filepath.Join(base, "missing"))
	waitFor(t, "agent answers", func() error {
		o, code := c.run(t, state, "status", dir, "--json")
		if code != 0 || !strings.Contains(o, `"running": true`) {
			return fmt.Errorf("status: %s", o)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "mount unavailable") {
		t.Errorf("no message about the mount: %s", out)
	}
}
