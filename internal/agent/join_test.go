package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJoinFromFolder: a new device joins through the peer folder alone.
// Without a full-history bundle there, join says so; with --wait it
// announces itself, the running agent of A exports a full-history bundle
// for it, and the new device starts with A's events. Once trusted, its
// own events reach A through the folder.
func TestJoinFromFolder(t *testing.T) {
	base := shortTemp(t)
	a, c := newDevice(t, base, "a"), newDevice(t, base, "c")
	p := filepath.Join(base, "p")
	os.MkdirAll(p, 0o755)
	a.must("init", a.dir, "--actor", "alpha")
	for i := range 5 {
		appendObs(a, "well_a", i)
	}
	ra := a.startAgent(p)

	out, code := c.run("join", p, c.dir, "--actor", "charlie")
	if code == 0 || !strings.Contains(out, "no full-history bundle") {
		t.Fatalf("join without a full bundle: exit %d\n%s", code, out)
	}
	out = c.must("join", p, c.dir, "--actor", "charlie", "--wait", "60s")
	cID := keyIDLine(out)
	if cID == "" || !strings.Contains(out, "imported from") {
		t.Fatalf("join output:\n%s", out)
	}
	sa, sc := a.status(), c.status()
	if sc.Backpack.StateHash != sa.Backpack.StateHash || sc.Backpack.Events != sa.Backpack.Events {
		t.Fatalf("joined device: %d events, state %s; A: %d events, state %s",
			sc.Backpack.Events, sc.Backpack.StateHash, sa.Backpack.Events, sa.Backpack.StateHash)
	}
	c.must("verify", c.dir, "-q")

	a.must("trust", a.dir, cID)
	rc := c.startAgent(p)
	appendObs(c, "well_c", 1)
	waitFor(t, 120*time.Second, "C's event on A", func() bool {
		sa, sc := a.status(), c.status()
		return sa.Backpack.StateHash == sc.Backpack.StateHash && sa.Backpack.Events == sc.Backpack.Events &&
			sa.Held.Quarantine == 0 && sa.Backpack.Events >= 2+5+1+1
	})
	ra.stop(t, "a")
	rc.stop(t, "c")
}
