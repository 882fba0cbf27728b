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
