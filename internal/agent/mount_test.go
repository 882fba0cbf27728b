package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backpack-field/backpack/fusefs"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/store"
)

// inProcessAgent makes a backpack and an agent for it with one peer
// folder, mounting at mnt, in this process.
func inProcessAgent(t *testing.T, mnt string) (*agent.Agent, string) {
	t.Helper()
	base := shortTemp(t)
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "s"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "c"))
	t.Setenv("BACKPACK_KEY", "")
	dir, peer := filepath.Join(base, "bp"), filepath.Join(base, "peer")
	if err := os.Mkdir(peer, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Init(context.Background(), dir, store.InitOptions{Actor: "camp"}); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Dir: dir, Peers: []string{peer}, Interval: time.Second, Mount: mnt})
	if err != nil {
		t.Fatal(err)
	}
	return a, dir
}

// runAgent runs a until the returned stop is called; stop returns Run's
// error.
func runAgent(t *testing.T, a *agent.Agent) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("the agent did not stop")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitUntil(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentMountUnavailable: when the mount fails, the agent syncs
// without it and its status says why.
func TestAgentMountUnavailable(t *testing.T) {
	a, _ := inProcessAgent(t, filepath.Join(t.TempDir(), "missing"))
	stop := runAgent(t, a)
	waitUntil(t, "a pass and the mount's error in the status", func() error {
		s := a.Status()
		if s == nil || s.Agent.Passes == 0 {
			return errors.New("no pass yet")
		}
		for _, e := range s.Errors {
			if e.Where == "mount" && strings.Contains(e.Message, "does not exist") {
				return nil
			}
		}
		return fmt.Errorf("recent errors: %+v", s.Errors)
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestAgentMount: the agent mounts the backpack, shows its own status in
// status.json, and unmounts when it stops.
func TestAgentMount(t *testing.T) {
	if os.Getenv("BACKPACK_TEST_FUSE") == "0" {
		t.Skip("BACKPACK_TEST_FUSE=0: FUSE tests disabled")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse (%v): FUSE mount tests need it", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil && os.Geteuid() != 0 {
		t.Skip("not root and no fusermount3: cannot mount")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	a, dir := inProcessAgent(t, mnt)
	stop := runAgent(t, a)
	waitUntil(t, "the agent's status in the mount", func() error {
		data, err := os.ReadFile(filepath.Join(mnt, "status.json"))
		if err != nil || !strings.Contains(string(data), `"running": true`) || !strings.Contains(string(data), `"passes": `) {
			return fmt.Errorf("%v: %s", err, data)
		}
		return nil
	})
	// A write through the mount takes turns with the agent's passes.
	if err := os.WriteFile(filepath.Join(mnt, "new/gate.json"), []byte(`{"subject":"gate","predicate":"open","value":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "state/local/gate/open")); err != nil || string(got) != "true\n" {
		t.Fatalf("state/local/gate/open: %q %v", got, err)
	}
	disk, err := os.ReadFile(filepath.Join(dir, store.EventsPath))
	if err != nil || !strings.Contains(string(disk), `"subject":"gate"`) {
		t.Fatalf("the observation is not in the log: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if typ := fusefs.MountType(mnt); typ != "" {
		t.Fatalf("still mounted after the agent stopped (%s)", typ)
	}
}
