package cli_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Replay a failing run with -kill.seed=N (or BACKPACK_KILL_SEED=N);
// -kill.n sets the number of kills.
var (
	killSeed = flag.Uint64("kill.seed", 0, "seed of TestKillDuringImport (0: pick one; env BACKPACK_KILL_SEED)")
	killN    = flag.Int("kill.n", 50, "TestKillDuringImport: number of killed runs")
)

// buildBackpack builds the backpack binary into a temp dir, once per test.
func buildBackpack(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary with")
	}
	bin := filepath.Join(t.TempDir(), "backpack")
	cmd := exec.CommandContext(t.Context(), gobin, "build", "-o", bin, "github.com/backpack-field/backpack/cmd/backpack")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// child runs the binary with its own device-state directory (pending and
// quarantine live there) and the test's key directory.
type child struct {
	bin, config string
}

func (c child) cmd(ctx context.Context, state string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "XDG_STATE_HOME="+state, "BACKPACK_KEY=")
	return cmd
}

func (c child) run(t *testing.T, state string, args ...string) (string, int) {
	t.Helper()
	out, err := c.cmd(t.Context(), state, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("backpack %v: %v", args, err)
	}
	return string(out), 0
}

// killFixture is a backpack and what an import brings into it.
type killFixture struct {
	name   string
	dir    string   // the backpack before the import
	args   []string // the import command, with DIR where the copy goes
	before []byte   // events.ndjson before
	after  []byte   // events.ndjson after an uninterrupted run
	took   time.Duration
}

func TestKillDuringImport(t *testing.T) {
	seed := *killSeed
	if s := os.Getenv("BACKPACK_KILL_SEED"); seed == 0 && s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BACKPACK_KILL_SEED: %v", err)
		}
		seed = v
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay: go test ./internal/cli -run TestKillDuringImport -kill.seed=%d", seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, seed^0x4b111))
	bin := buildBackpack(t)
	base := isolate(t)
	c := child{bin: bin, config: filepath.Join(base, "config")}
	fixtures := killFixtures(t, c, base)

	outcomes := map[string]int{}
	for i := range *killN {
		fx := fixtures[i%len(fixtures)]
		dir := filepath.Join(base, fmt.Sprintf("kill%d", i))
		state := filepath.Join(base, fmt.Sprintf("kill%d-state", i))
		if err := os.CopyFS(dir, os.DirFS(fx.dir)); err != nil {
			t.Fatal(err)
		}
		args := make([]string, len(fx.args))
		for j, a := range fx.args {
			args[j] = strings.ReplaceAll(a, "DIR", dir)
		}
		delay := time.Duration(rng.Int64N(int64(fx.took) + int64(fx.took)/4 + 1))
		cmd := c.cmd(t.Context(), state, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		werr := cmd.Wait()

		got, err := os.ReadFile(filepath.Join(dir, "events", "events.ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		outcome := killOutcome(fx, got)
		if j := journal(t, state); outcome == "between" && j != "" {
			// Killed in the middle of writing a batch (a long write can
			// stop part way on SIGKILL) or of rewriting the log's tail in
			// place: the journal lets the next writer cut the partial
			// batch, or put back the old tail or finish the new one.
			if out, code := c.run(t, state, "manifest", dir); code != 0 {
				t.Fatalf("run %d (%s, killed after %v): the next writer: exit %d\n%s", i, fx.name, delay, code, out)
			}
			got, err = os.ReadFile(filepath.Join(dir, "events", "events.ndjson"))
			if err != nil {
				t.Fatal(err)
			}
			outcome = j + " left, then " + killOutcome(fx, got) + " once the next writer settled it"
		}
		outcomes[fx.name+": "+outcome]++
		if strings.HasPrefix(outcome, "between") || strings.Contains(outcome, "then between") {
			t.Fatalf("run %d (%s, killed after %v, %v): the log is neither as before the import nor as after it (%d bytes; before %d, after %d)",
				i, fx.name, delay, werr, len(got), len(fx.before), len(fx.after))
		}
		// verify passes at once, or after the next writer has repaired
		// what the kill left (a torn tail, stale derived files).
		if out, code := c.run(t, state, "verify", dir); code != 0 {
			outcomes[fx.name+": verify failed until the next writer ("+verifyFailure(out)+")"]++
			if out, code := c.run(t, state, "manifest", dir); code != 0 {
				t.Fatalf("run %d (%s, killed after %v): the next writer: exit %d\n%s", i, fx.name, delay, code, out)
			}
			if out, code := c.run(t, state, "verify", dir); code != 0 {
				t.Fatalf("run %d (%s, killed after %v): verify after the next writer: exit %d\n%s", i, fx.name, delay, code, out)
			}
		}
		// A temp file of an interrupted log rewrite (events/) is not
		// removed by the next writer and ends up in the manifest; that is
		// reported, so it is only counted here.
		if temps := tempFiles(t, dir); len(temps) > 0 {
			outcomes[fx.name+": temp files kept by the next writer"]++
		}
		// Run it again to completion: the work is done, exactly as by an
		// uninterrupted run.
		if out, code := c.run(t, state, args...); code != 0 {
			t.Fatalf("run %d (%s, killed after %v): re-run: exit %d\n%s", i, fx.name, delay, code, out)
		}
		if out, code := c.run(t, state, "verify", dir); code != 0 {
			t.Fatalf("run %d (%s): verify after the re-run: exit %d\n%s", i, fx.name, code, out)
		}
		final, _ := os.ReadFile(filepath.Join(dir, "events", "events.ndjson"))
		if !bytes.Equal(final, fx.after) {
			t.Fatalf("run %d (%s, killed after %v): after the re-run the log differs from an uninterrupted run's", i, fx.name, delay)
		}
		os.RemoveAll(dir)
		os.RemoveAll(state)
	}
	t.Logf("seed %d: %v", seed, outcomes)
}

// journal returns the name of the journal (an append's or a tail
// rewrite's) a device directory under the state directory holds, or "".
func journal(t *testing.T, state string) string {
	t.Helper()
	for _, name := range []string{"append.journal", "rewrite.journal"} {
		if found, _ := filepath.Glob(filepath.Join(state, "backpack", "*", name)); len(found) > 0 {
			return name
		}
	}
	return ""
}

// verifyFailure names the kinds of failure verify reported.
func verifyFailure(out string) string {
	var kinds []string
	for l := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(l, "FAIL ") {
			continue
		}
		k := "other"
		switch {
		case strings.Contains(l, "phantom_file") && strings.Contains(l, ".tmp-"):
			k = "temp file"
		case strings.Contains(l, "manifest"):
			k = "stale manifest"
		case strings.Contains(l, "line"):
			k = "torn line"
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	return strings.Join(kinds, ", ")
}

// tempFiles lists the files in dir a writer leaves only when it is
// interrupted (writeFileAtomic's ".NAME.tmp-*").
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), ".tmp-") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// killOutcome classifies the log a killed run left: as before the run,
// as after it, before plus a torn (incomplete) last line, or anything
// else ("between").
func killOutcome(fx *killFixture, got []byte) string {
	switch {
	case bytes.Equal(got, fx.before):
		return "before"
	case bytes.Equal(got, fx.after):
		return "after"
	case bytes.HasPrefix(got, fx.before) && !bytes.HasSuffix(got, []byte("\n")) && bytes.Count(got[len(fx.before):], []byte("\n")) == 0:
		return "torn"
	}
	return "between"
}

// killFixtures makes the backpacks the kills run on: an import that only
// appends, an import that must rewrite the log (the new events go before
// the receiver's own), and a merge that rewrites.
func killFixtures(t *testing.T, c child, base string) []*killFixture {
	t.Helper()
	src := filepath.Join(base, "src")
	mustRun(t, "init", src, "--actor", "north", "--uid", "kill-test")
	appendMany(t, src, "north", 300)
	recv := filepath.Join(base, "recv")
	if err := os.CopyFS(recv, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	frontier := filepath.Join(base, "recv.frontier")
	if err := os.WriteFile(frontier, []byte(mustRun(t, "frontier", recv)), 0o644); err != nil {
		t.Fatal(err)
	}
	appendMany(t, src, "north", 400)
	bundle := filepath.Join(base, "delta.bpk")
	mustRun(t, "export", src, "-o", bundle, "--since", frontier)
	// The same receiver after writing its own events: src's new events
	// (older timestamps) go before them, so the log is rewritten.
	busy := filepath.Join(base, "busy")
	if err := os.CopyFS(busy, os.DirFS(recv)); err != nil {
		t.Fatal(err)
	}
	appendMany(t, busy, "south", 200)

	fixtures := []*killFixture{
		{name: "import appends", dir: recv, args: []string{"import", "DIR", bundle}},
		{name: "import rewrites", dir: busy, args: []string{"import", "DIR", bundle}},
		{name: "merge rewrites", dir: busy, args: []string{"merge", "DIR", src}},
	}
	for i, fx := range fixtures {
		var err error
		if fx.before, err = os.ReadFile(filepath.Join(fx.dir, "events", "events.ndjson")); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(base, fmt.Sprintf("uninterrupted%d", i))
		if err := os.CopyFS(dir, os.DirFS(fx.dir)); err != nil {
			t.Fatal(err)
		}
		args := make([]string, len(fx.args))
		for j, a := range fx.args {
			args[j] = strings.ReplaceAll(a, "DIR", dir)
		}
		start := time.Now()
		out, code := c.run(t, filepath.Join(base, fmt.Sprintf("uninterrupted%d-state", i)), args...)
		fx.took = time.Since(start)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", fx.name, code, out)
		}
		fx.after, _ = os.ReadFile(filepath.Join(dir, "events", "events.ndjson"))
		if bytes.Equal(fx.after, fx.before) {
			t.Fatalf("%s: the uninterrupted run changed nothing:\n%s", fx.name, out)
		}
		if rewrote := strings.Contains(out, "reordered"); rewrote != strings.Contains(fx.name, "rewrites") {
			t.Fatalf("%s: rewrote the log: %v\n%s", fx.name, rewrote, out)
		}
		t.Logf("%s: uninterrupted run %v", fx.name, fx.took)
	}
	return fixtures
}

// appendMany appends n observations as actor in one batch.
func appendMany(t *testing.T, dir, actor string, n int) {
	t.Helper()
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, `{"type":"OBSERVATION","payload":{"subject":"well_%d","predicate":"level","value":%d,"confidence":0.8}}`+"\n", i%17, i)
	}
	if out, code := run(t, in.String(), "append", dir, "--event", "-", "--actor", actor); code != 0 {
		t.Fatalf("append: exit %d\n%s", code, out)
	}
}
