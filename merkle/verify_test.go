package merkle_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

// TestVerifyReferenceBackpacks checks the integrity facts of expected.json.
func TestVerifyReferenceBackpacks(t *testing.T) {
	for _, name := range backpacks {
		t.Run(name, func(t *testing.T) {
			want := expected(t, name)
			r := merkle.VerifyDir(conformance.Path(t, name))
			if !r.OK || len(r.Problems) != 0 || len(r.Warnings) != 0 {
				t.Errorf("report:\n%s", r)
			}
			if r.StoredRoot != want.MerkleRootStored || r.ManifestRoot != want.MerkleRootFromStoredManifest || r.DiskRoot != want.MerkleRootFromDiskWalk {
				t.Errorf("roots %s %s %s, want %s %s %s", r.StoredRoot, r.ManifestRoot, r.DiskRoot,
					want.MerkleRootStored, want.MerkleRootFromStoredManifest, want.MerkleRootFromDiskWalk)
			}
			if r.FilesMatchDisk != want.ManifestFilesMatchDisk || int(r.FileCount) != want.ManifestFileCount ||
				r.Entries != want.ManifestFileCount || r.DiskFiles != want.ManifestFileCount {
				t.Errorf("match %v, file_count %d, entries %d, disk %d", r.FilesMatchDisk, r.FileCount, r.Entries, r.DiskFiles)
			}
			if r.Has(merkle.NonCanonicalManifest, "") != !want.ManifestJSONIsCanonicalNoNewline {
				t.Errorf("canonical manifest: %v", r.Warnings)
			}
		})
	}
}

// fixture is a writable copy of the reference backpack with its parsed
// manifest and root.
type fixture struct {
	dir  string
	m    merkle.Manifest
	root string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := copyTree(t, conformance.Path(t, "reference_backpack"))
	m, err := merkle.ParseManifest(mustReadFile(t, dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{dir, m, string(mustReadFile(t, dir, "merkle_root.txt"))}
}

// finding is the comparable part of a Problem.
type finding struct {
	Kind      merkle.ProblemKind
	Path      string
	Want, Got string
}

func (f finding) String() string {
	return fmt.Sprintf("%s %q want=%q got=%q", f.Kind, f.Path, f.Want, f.Got)
}

func findings(ps []merkle.Problem) []finding {
	var out []finding
	for _, p := range ps {
		out = append(out, finding{p.Kind, p.Path, p.Want, p.Got})
	}
	return out
}

// check compares a report's problems with want. A want Want/Got of "*"
// matches anything.
func check(t *testing.T, r *merkle.Report, want ...finding) {
	t.Helper()
	got := findings(r.Problems)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		w, g := want[i], got[i]
		if w.Want == "*" {
			w.Want = g.Want
		}
		if w.Got == "*" {
			w.Got = g.Got
		}
		ok = w == g
	}
	if !ok {
		t.Errorf("problems:\n%s\nwant:\n%s\nreport:\n%s", lines(got), lines(want), r)
	}
	if r.OK != (len(want) == 0) {
		t.Errorf("OK = %v with %d problems", r.OK, len(r.Problems))
	}
}

func lines[T fmt.Stringer](xs []T) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString("  " + x.String() + "\n")
	}
	return b.String()
}

const (
	refRoot = "adf472c6529d7c6e9fb99c49242896917d053dae4f50e7de477fcdf1f9097370"
	logPath = "events/events.ndjson"
	logSHA  = "8fb585c0348e48e0a23dc5d8ebd7728dc39062cd6b3895c0f270e83eccfff067"
)

func TestVerifyDiskDamage(t *testing.T) {
	t.Run("changed byte", func(t *testing.T) {
		f := newFixture(t)
		p := filepath.Join(f.dir, "events", "events.ndjson")
		b := mustReadFile(t, p)
		b[100] ^= 1
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r := merkle.Verify(f.dir, f.m, f.root)
		check(t, r,
			finding{merkle.SHA256Mismatch, logPath, logSHA, sha(string(b))},
			finding{merkle.DiskRootMismatch, "", refRoot, "*"},
		)
		if r.FilesMatchDisk || r.StoredRoot != refRoot || r.ManifestRoot != refRoot || r.DiskRoot == refRoot {
			t.Errorf("report fields: %+v", r)
		}
	})
	t.Run("size change", func(t *testing.T) {
		f := newFixture(t)
		writeFile(t, f.dir, "state/.keep", "now with bytes")
		check(t, merkle.Verify(f.dir, f.m, f.root),
			finding{merkle.SizeMismatch, "state/.keep", "0", "14"},
			finding{merkle.SHA256Mismatch, "state/.keep", sha(""), sha("now with bytes")},
			finding{merkle.DiskRootMismatch, "", refRoot, "*"},
		)
	})
	t.Run("missing file", func(t *testing.T) {
		f := newFixture(t)
		if err := os.Remove(filepath.Join(f.dir, "identity", "genesis.json")); err != nil {
			t.Fatal(err)
		}
		check(t, merkle.Verify(f.dir, f.m, f.root),
			finding{merkle.MissingFile, "identity/genesis.json", "", ""},
			finding{merkle.DiskRootMismatch, "", refRoot, "*"},
		)
	})
	t.Run("file replaced by a directory", func(t *testing.T) {
		f := newFixture(t)
		p := filepath.Join(f.dir, "state", ".keep")
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		writeFile(t, f.dir, "state/.keep/inner", "x")
		check(t, merkle.Verify(f.dir, f.m, f.root),
			finding{merkle.MissingFile, "state/.keep", "", ""},
			finding{merkle.PhantomFile, "state/.keep/inner", "", sha("x")},
			finding{merkle.DiskRootMismatch, "", refRoot, "*"},
		)
	})
	t.Run("phantom files", func(t *testing.T) {
		f := newFixture(t)
		writeFile(t, f.dir, "artifacts/cas/.sneaky", "hidden payload")
		writeFile(t, f.dir, "identity/private_keys.json", "excluded, not a phantom")
		writeFile(t, f.dir, "events/manifest.json", "only excluded at the root")
		check(t, merkle.Verify(f.dir, f.m, f.root),
			finding{merkle.PhantomFile, "artifacts/cas/.sneaky", "", sha("hidden payload")},
			finding{merkle.PhantomFile, "events/manifest.json", "", sha("only excluded at the root")},
			finding{merkle.DiskRootMismatch, "", refRoot, "*"},
		)
	})
	t.Run("escaping symlink", func(t *testing.T) {
		f := newFixture(t)
		symlink(t, "/etc/passwd", f.dir, "artifacts/passwd")
		symlink(t, "/", f.dir, "artifacts/rootfs")
		r := merkle.Verify(f.dir, f.m, f.root)
		check(t, r,
			finding{merkle.EscapingSymlink, "artifacts/passwd", "", ""},
			finding{merkle.EscapingSymlink, "artifacts/rootfs", "", ""},
		)
		if r.DiskRoot != refRoot {
			t.Errorf("disk root %s: escaping links must not count", r.DiskRoot)
		}
	})
	t.Run("symlink inside is a phantom with its target's digest", func(t *testing.T) {
		f := newFixture(t)
		symlink(t, "../identity/keys.json", f.dir, "state/keys-link")
		check(t, merkle.Verify(f.dir, f.m, f.root),
			finding{merkle.PhantomFile, "state/keys-link", "", "688ccf7cbb264ccb486d742c1b2fbba143e956e1f04c6fd25978115059a1212f"},
			finding{merkle.DiskRootMismatch, "", refRoot, "*"},
		)
	})
	t.Run("dangling symlink is a warning", func(t *testing.T) {
		f := newFixture(t)
		symlink(t, "nowhere", f.dir, "state/dangling")
		r := merkle.Verify(f.dir, f.m, f.root)
		check(t, r)
		if !r.Has(merkle.SkippedPath, "state/dangling") {
			t.Errorf("warnings %v", r.Warnings)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		f := newFixture(t)
		r := merkle.Verify(filepath.Join(f.dir, "nope"), f.m, f.root)
		check(t, r, finding{merkle.Unreadable, "", "", ""})
	})
}

// withFiles returns m with its entries replaced (file_count kept right).
func withFiles(m merkle.Manifest, files []merkle.Entry) merkle.Manifest {
	m.Files = files
	m.FileCount = int64(len(files))
	return m
}

func TestVerifyManifestFaults(t *testing.T) {
	f := newFixture(t)
	files := func() []merkle.Entry { return slices.Clone(f.m.Files) }
	idx := func(p string) int {
		return slices.IndexFunc(f.m.Files, func(e merkle.Entry) bool { return e.Path == p })
	}
	log := idx(logPath)

	t.Run("wrong size entry", func(t *testing.T) {
		fs := files()
		fs[log].Size = 941
		m := withFiles(f.m, fs)
		mroot, _ := m.Root()
		check(t, merkle.Verify(f.dir, m, f.root),
			finding{merkle.RootMismatch, "", mroot.String(), refRoot},
			finding{merkle.SizeMismatch, logPath, "941", "940"},
			finding{merkle.DiskRootMismatch, "", mroot.String(), refRoot},
		)
	})
	t.Run("wrong digest entry, recomputed root stored", func(t *testing.T) {
		fs := files()
		fs[log].SHA256 = strings.ToUpper(logSHA)
		m := withFiles(f.m, fs)
		mroot, _ := m.Root()
		r := merkle.Verify(f.dir, m, mroot.String()+"\n")
		check(t, r,
			finding{merkle.SHA256Mismatch, logPath, strings.ToUpper(logSHA), logSHA},
			finding{merkle.DiskRootMismatch, "", mroot.String(), refRoot},
		)
		if !strings.Contains(r.Problems[0].Detail, "malformed") {
			t.Errorf("detail %q", r.Problems[0].Detail)
		}
	})
	t.Run("entry for a file that does not exist", func(t *testing.T) {
		fs := files()
		fs = append(fs, merkle.Entry{Path: "zz/none", SHA256: sha(""), Size: 0})
		m := withFiles(f.m, fs)
		mroot, _ := m.Root()
		check(t, merkle.Verify(f.dir, m, mroot.String()),
			finding{merkle.MissingFile, "zz/none", "", ""},
			finding{merkle.DiskRootMismatch, "", mroot.String(), refRoot},
		)
	})
	t.Run("unsafe paths", func(t *testing.T) {
		outside := t.TempDir()
		writeFile(t, outside, "secret", "s")
		symlink(t, outside, f.dir, "artifacts/out")
		defer os.Remove(filepath.Join(f.dir, "artifacts", "out"))
		bad := []merkle.Entry{
			{Path: "/etc/passwd", SHA256: sha(""), Size: 0},
			{Path: "../x", SHA256: sha(""), Size: 0},
			{Path: "artifacts/out/secret", SHA256: sha("s"), Size: 1},
			{Path: "events/../../x", SHA256: sha(""), Size: 0},
			{Path: "state//.keep", SHA256: sha(""), Size: 0},
		}
		fs := append(files(), bad...)
		merkle.SortEntries(fs)
		m := withFiles(f.m, fs)
		mroot, _ := m.Root()
		r := merkle.Verify(f.dir, m, mroot.String())
		check(t, r,
			finding{merkle.UnsafePath, "../x", "", ""},
			finding{merkle.UnsafePath, "/etc/passwd", "", ""},
			finding{merkle.UnsafePath, "artifacts/out/secret", "", ""},
			finding{merkle.UnsafePath, "events/../../x", "", ""},
			finding{merkle.UnsafePath, "state//.keep", "", ""},
			finding{merkle.EscapingSymlink, "artifacts/out", "", ""},
			finding{merkle.DiskRootMismatch, "", mroot.String(), refRoot},
		)
		if r.FilesMatchDisk {
			t.Error("FilesMatchDisk with unsafe paths")
		}
	})
	t.Run("unsorted and duplicated entries", func(t *testing.T) {
		fs := files()
		fs[0], fs[1] = fs[1], fs[0]
		fs = append(fs, fs[len(fs)-1])
		m := withFiles(f.m, fs)
		ref, _ := merkle.ReferenceRoot(m.Files)
		r := merkle.Verify(f.dir, m, ref.String())
		check(t, r,
			finding{merkle.UnsortedEntry, fs[1].Path, "", ""},
			finding{merkle.DuplicateEntry, fs[len(fs)-1].Path, "", ""},
			finding{merkle.DiskRootMismatch, "", ref.String(), refRoot},
		)
		// Only the order changed for the first fault: the reference's root
		// (which sorts) is unaffected by it.
		m2 := withFiles(f.m, fs[:len(fs)-1])
		check(t, merkle.Verify(f.dir, m2, f.root), finding{merkle.UnsortedEntry, fs[1].Path, "", ""})
	})
	t.Run("file_count and versions", func(t *testing.T) {
		m := f.m
		m.FileCount = 11
		m.SpecVersion = "2.0"
		m.ManifestVersion = "manifest.v1"
		r := merkle.Verify(f.dir, m, f.root)
		check(t, r,
			finding{merkle.BadSpecVersion, "", `"1.0"`, `"2.0"`},
			finding{merkle.FileCountMismatch, "", "10", "11"},
		)
		if !r.Has(merkle.OddManifestVersion, "") {
			t.Errorf("warnings %v", r.Warnings)
		}
	})
	t.Run("unknown members are warnings", func(t *testing.T) {
		m := f.m
		m.Extra = []canon.Member{{Key: "note", Value: canon.StringValue("x")}}
		r := merkle.Verify(f.dir, m, f.root)
		check(t, r)
		if !r.Has(merkle.UnknownField, "") {
			t.Errorf("warnings %v", r.Warnings)
		}
		fs := files()
		fs[log].Extra = []canon.Member{{Key: "mode", Value: canon.IntValue(420)}}
		m = withFiles(f.m, fs)
		mroot, _ := m.Root()
		r = merkle.Verify(f.dir, m, mroot.String())
		check(t, r, finding{merkle.DiskRootMismatch, "", mroot.String(), refRoot})
		if !r.Has(merkle.UnknownField, logPath) {
			t.Errorf("warnings %v", r.Warnings)
		}
	})
	t.Run("merkle_root.txt", func(t *testing.T) {
		for _, tt := range []struct {
			name, stored string
			want         []finding
		}{
			{"with spaces", "  " + refRoot + " \r\n", nil},
			{"missing", "", []finding{{merkle.BadRootFile, "", "", ""}}},
			{"uppercase", strings.ToUpper(refRoot), []finding{{merkle.BadRootFile, "", "", ""}, {merkle.RootMismatch, "", refRoot, strings.ToUpper(refRoot)}}},
			{"other root", merkle.EmptyRoot.String(), []finding{{merkle.RootMismatch, "", refRoot, merkle.EmptyRoot.String()}}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				check(t, merkle.Verify(f.dir, f.m, tt.stored), tt.want...)
			})
		}
	})
}

func TestVerifyDirFiles(t *testing.T) {
	t.Run("manifest with a trailing newline", func(t *testing.T) {
		f := newFixture(t)
		p := filepath.Join(f.dir, "manifest.json")
		if err := os.WriteFile(p, append(mustReadFile(t, p), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		r := merkle.VerifyDir(f.dir)
		check(t, r)
		if len(r.Warnings) != 1 || r.Warnings[0].Kind != merkle.NonCanonicalManifest || r.Warnings[0].Detail != "ends with a newline" {
			t.Errorf("warnings %v", r.Warnings)
		}
	})
	t.Run("missing manifest", func(t *testing.T) {
		f := newFixture(t)
		if err := os.Remove(filepath.Join(f.dir, "manifest.json")); err != nil {
			t.Fatal(err)
		}
		check(t, merkle.VerifyDir(f.dir), finding{merkle.BadManifest, "manifest.json", "", ""})
	})
	t.Run("malformed manifest", func(t *testing.T) {
		f := newFixture(t)
		writeFile(t, f.dir, "manifest.json", `{"files":[{"path":"a","sha256":"","size":1.0}]}`)
		r := merkle.VerifyDir(f.dir)
		check(t, r, finding{merkle.BadManifest, "manifest.json", "", ""})
	})
	t.Run("missing merkle_root.txt", func(t *testing.T) {
		f := newFixture(t)
		if err := os.Remove(filepath.Join(f.dir, "merkle_root.txt")); err != nil {
			t.Fatal(err)
		}
		check(t, merkle.VerifyDir(f.dir), finding{merkle.BadRootFile, "", "", ""})
	})
	t.Run("rebuilt seal verifies", func(t *testing.T) {
		f := newFixture(t)
		writeFile(t, f.dir, "artifacts/cas/blob", "new content")
		res, err := merkle.Build(f.dir, merkle.BuildOptions{CreatedAtUTC: "2026-03-01T00:00:00+00:00"})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := res.Manifest.Encode()
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, f.dir, "manifest.json", string(enc))
		writeFile(t, f.dir, "merkle_root.txt", string(merkle.EncodeRootFile(res.Root)))
		r := merkle.VerifyDir(f.dir)
		check(t, r)
		if r.DiskRoot != res.Root.String() || len(r.Warnings) != 0 {
			t.Errorf("report:\n%s", r)
		}
	})
}

func TestReportOutput(t *testing.T) {
	f := newFixture(t)
	writeFile(t, f.dir, "state/.keep", "x")
	writeFile(t, f.dir, "artifacts/x", "p")
	r := merkle.Verify(f.dir, f.m, f.root)
	text := r.String()
	for _, want := range []string{"FAILED (4 problems)", "root stored    " + refRoot, `problem: size_mismatch "state/.keep": want 0, got 1`, `problem: phantom_file "artifacts/x": got ` + sha("p") + ` (size 1)`} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK       bool              `json:"ok"`
		Stored   string            `json:"merkle_root_stored"`
		Match    bool              `json:"manifest_files_match_disk"`
		Problems []json.RawMessage `json:"problems"`
		Warnings []json.RawMessage `json:"warnings"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.OK || back.Stored != refRoot || back.Match || len(back.Problems) != 4 || back.Warnings == nil {
		t.Errorf("JSON %s", b)
	}
	if !strings.Contains(string(b), `{"kind":"size_mismatch","path":"state/.keep","want":"0","got":"1"}`) {
		t.Errorf("JSON problem shape: %s", b)
	}
	ok := merkle.VerifyDir(conformance.Path(t, "reference_backpack"))
	if s := ok.String(); !strings.Contains(s, ": OK\n") {
		t.Errorf("OK report text:\n%s", s)
	}
}
