package fusefs_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/backpack-field/backpack/fusefs"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	"github.com/backpack-field/backpack/reducer"
)

func newView(t *testing.T, dir string) *fusefs.View {
	t.Helper()
	src, err := agent.NewMountSource(dir, agent.MountSourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	v, err := fusefs.NewView(context.Background(), dir, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func readFS(t *testing.T, fsys fs.FS, name string) []byte {
	t.Helper()
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestViewFS(t *testing.T) {
	fx := newFixture(t)
	v := newView(t, fx.dir)
	fsys := v.FS()
	if err := fstest.TestFS(fsys, "events/events.ndjson", "identity/keys.json", "identity/genesis.json",
		"manifest.json", "merkle_root.txt", "manifest.sig", "state/state.json",
		"state/local/system", "state/contested/door_01/status", "state/canonical/door_02/status",
		"timeline/field_laptop.ndjson"); err != nil {
		t.Fatal(err)
	}
}

// TestViewOwnFilesMatchDisk: every file the view shows from the backpack
// is byte-identical to the disk, and every file on disk under the shown
// directories is there, except private keys.
func TestViewOwnFilesMatchDisk(t *testing.T) {
	fx := newFixture(t)
	v := newView(t, fx.dir)
	fsys := v.FS()
	var want []string
	for _, d := range []string{"identity", "policies"} {
		filepath.WalkDir(filepath.Join(fx.dir, d), func(p string, de fs.DirEntry, err error) error {
			if err == nil && !de.IsDir() {
				rel, _ := filepath.Rel(fx.dir, p)
				want = append(want, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	want = append(want, "events/events.ndjson", "manifest.json", "manifest.sig", "merkle_root.txt")
	sawPrivate := false
	for _, rel := range want {
		if rel == store.PrivateKeysPath {
			sawPrivate = true
			if _, err := fs.Stat(fsys, rel); err == nil {
				t.Fatalf("%s is visible", rel)
			}
			continue
		}
		disk, err := os.ReadFile(filepath.Join(fx.dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := readFS(t, fsys, rel); !bytes.Equal(got, disk) {
			t.Errorf("%s: view has %d bytes, disk %d, or they differ", rel, len(got), len(disk))
		}
	}
	if !sawPrivate {
		t.Fatal("fixture has no identity/private_keys.json to hide")
	}
}

// TestViewNoPrivateKey walks the whole tree for the key's bytes.
func TestViewNoPrivateKey(t *testing.T) {
	fx := newFixture(t)
	v := newView(t, fx.dir)
	checkNoSecrets(t, v.FS(), fx.secrets(t))
}

func checkNoSecrets(t *testing.T, fsys fs.FS, secrets [][]byte) {
	t.Helper()
	files := 0
	err := fs.WalkDir(fsys, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(strings.ToLower(p), "private") {
			t.Errorf("%s: a private file is visible", p)
		}
		if de.IsDir() {
			return nil
		}
		files++
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("%s holds the private key", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("walked only %d files", files)
	}
}

// TestViewState compares the state files with the reducer state, as
// `backpack state --canonical` prints it.
func TestViewState(t *testing.T) {
	fx := newFixture(t)
	v := newView(t, fx.dir)
	fsys := v.FS()
	bp, err := store.Open(context.Background(), fx.dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	beliefs := 0
	err = bp.WithState(func(s *reducer.State) error {
		js, err := s.ExportJSON()
		if err != nil {
			return err
		}
		if got := readFS(t, fsys, "state/state.json"); string(got) != string(js)+"\n" {
			t.Errorf("state.json differs from the state")
		}
		for _, ns := range []reducer.Namespace{reducer.Canonical, reducer.Local, reducer.Contested, reducer.Archived} {
			for key, val := range s.Entries(ns) {
				beliefs++
				if ns == reducer.Canonical || ns == reducer.Local {
					val = val.Field("value")
				}
				want := string(canon.MustEncode(val)) + "\n"
				if got := string(readFS(t, fsys, fusefs.BeliefPath(ns.String(), key))); got != want {
					t.Errorf("%s %q: got %q, want %q", ns, key, got, want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if beliefs != v.Info.Beliefs || beliefs < 6 {
		t.Fatalf("beliefs: state %d, view %d", beliefs, v.Info.Beliefs)
	}
	// The paths a person types.
	for p, want := range map[string]string{
		"state/canonical/door_02/status":              `"broken"` + "\n",
		"state/local/urn:site:7/flag":                 "true\n", // split at the last colon
		"state/local/path%2Fwith%2Fslashes/%2Ehidden": "7\n",
	} {
		if got, err := fs.ReadFile(fsys, p); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", p, got, err, want)
		}
	}
	contested := string(readFS(t, fsys, "state/contested/door_01/status"))
	for _, w := range []string{`"open"`, `"closed"`, "evidence_by_value", "event_id"} {
		if !strings.Contains(contested, w) {
			t.Errorf("contested belief lacks %s: %s", w, contested)
		}
	}
	archived := string(readFS(t, fsys, "state/archived/door_02/status"))
	if !strings.Contains(archived, `"ok"`) {
		t.Errorf("archived belief: %s", archived)
	}
}

// TestViewMatchesStateCommand compares state.json with what the CLI
// prints, when a built binary is at hand.
func TestViewMatchesStateCommand(t *testing.T) {
	fx := newFixture(t)
	v := newView(t, fx.dir)
	bin := filepath.Join(t.TempDir(), "backpack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/backpack").CombinedOutput(); err != nil {
		t.Skipf("cannot build the CLI: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "state", "--canonical", fx.dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := readFS(t, v.FS(), "state/state.json"); !bytes.Equal(got, out) {
		t.Fatalf("state.json differs from `backpack state --canonical`:\n%s\n%s", got, out)
	}
}

func TestViewTimelinesForksQuarantine(t *testing.T) {
	fx := newFixture(t)
	v := newView(t, fx.dir)
	fsys := v.FS()
	lines := logLines(t, fx.dir)
	tl := readFS(t, fsys, "timeline/field_laptop.ndjson")
	if want := string(bytes.Join(lines, []byte("\n"))) + "\n"; string(tl) != want {
		t.Errorf("timeline differs from the log (one actor)")
	}
	forks, err := fs.Glob(fsys, "forks/field_laptop/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var evidence, records int
	for _, p := range forks {
		data := readFS(t, fsys, p)
		if strings.HasSuffix(p, "/record.json") {
			records++
			continue
		}
		evidence++
		found := false
		for _, l := range lines {
			found = found || string(data) == string(l)+"\n"
		}
		if !found {
			t.Errorf("%s is not a log line: %s", p, data)
		}
	}
	if evidence != 2 || records != 1 {
		t.Fatalf("forks: %d events, %d records in %v", evidence, records, forks)
	}
	q, err := fs.ReadDir(fsys, "quarantine")
	if err != nil || len(q) != 1 {
		t.Fatalf("quarantine: %v %v", q, err)
	}
	data := readFS(t, fsys, "quarantine/"+q[0].Name())
	if !strings.Contains(string(data), "event_id does not match") {
		t.Errorf("quarantine file: %s", data)
	}
}

// sameTree compares two views file by file: names, kinds, permissions
// and bytes (not times).
func sameTree(t *testing.T, got, want fs.FS) {
	t.Helper()
	type file struct {
		mode fs.FileMode
		data string
	}
	walk := func(fsys fs.FS) map[string]file {
		out := map[string]file{}
		err := fs.WalkDir(fsys, ".", func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := de.Info()
			if err != nil {
				return err
			}
			f := file{mode: fi.Mode()}
			if !de.IsDir() {
				data, err := fs.ReadFile(fsys, p)
				if err != nil {
					return err
				}
				f.data = string(data)
			}
			out[p] = f
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	g, w := walk(got), walk(want)
	for p, wf := range w {
		gf, ok := g[p]
		switch {
		case !ok:
			t.Errorf("%s: missing", p)
		case gf.mode != wf.mode:
			t.Errorf("%s: mode %v, want %v", p, gf.mode, wf.mode)
		case gf.data != wf.data:
			t.Errorf("%s: %q, want %q", p, gf.data, wf.data)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: not in a view built from scratch", p)
		}
	}
}

// TestViewerIncremental: a Viewer updates state/ from the previous view
// when the log only grew, and the result equals a view built from
// scratch after every kind of change; changes it cannot follow (a name
// that is not a string) make it build from scratch.
func TestViewerIncremental(t *testing.T) {
	fx := newFixture(t)
	src, err := agent.NewMountSource(fx.dir, agent.MountSourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	vw := fusefs.NewViewer(fx.dir, src)
	v, err := vw.View(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !v.Info.Full {
		t.Error("the first view was not built from scratch")
	}
	v.Close()
	var epoch, odd canon.ObjectBuilder
	var epochPayload, oddPayload canon.ObjectBuilder
	epochPayload.Set("epoch_id", canon.StringValue("e2")).Set("reducer_hash", canon.StringValue("x"))
	epoch.Set("type", canon.StringValue("REDUCER_EPOCH")).Set("payload", epochPayload.Value())
	oddPayload.Set("subject", canon.IntValue(7)).Set("predicate", canon.StringValue("n")).Set("value", canon.IntValue(1))
	odd.Set("type", canon.StringValue("OBSERVATION")).Set("payload", oddPayload.Value())
	steps := []struct {
		name   string
		bodies []canon.Value
		full   bool
	}{
		{"nothing new", nil, false},
		{"new beliefs", []canon.Value{
			body("OBSERVATION", "pump_1", "status", canon.StringValue("on"), 0.9),
			body("OBSERVATION", "a/b", "%x", canon.IntValue(1), 0.9)}, false},
		{"a contest", []canon.Value{body("OBSERVATION", "pump_1", "status", canon.StringValue("off"), 0.8)}, false},
		{"an attestation", []canon.Value{body("ATTESTATION", "pump_1", "status", canon.StringValue("off"), -1)}, false},
		{"another attestation", []canon.Value{body("ATTESTATION", "pump_1", "status", canon.StringValue("on"), -1)}, false},
		{"a retraction", []canon.Value{body("RETRACTION", "door_02", "status", canon.NullValue(), -1)}, false},
		{"an epoch", []canon.Value{epoch.Value()}, false},
		{"a subject that is not a string", []canon.Value{odd.Value()}, true},
		{"after a full build", []canon.Value{body("OBSERVATION", "pump_2", "status", canon.StringValue("on"), 0.9)}, false},
	}
	for _, st := range steps {
		fx.append(t, st.bodies...)
		v, err := vw.View(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if v.Info.Full != st.full {
			t.Errorf("%s: built from scratch: %v, want %v", st.name, v.Info.Full, st.full)
		}
		sameTree(t, v.FS(), newView(t, fx.dir).FS())
		v.Close()
	}
	// A log rewritten (here: replaced by a copy) is a new index: built
	// from scratch.
	p := filepath.Join(fx.dir, store.EventsPath)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	v, err = vw.View(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if !v.Info.Full {
		t.Error("a replaced log did not rebuild the state")
	}
	sameTree(t, v.FS(), newView(t, fx.dir).FS())
}
