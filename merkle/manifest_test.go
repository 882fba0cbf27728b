package merkle_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

// TestStoredManifests checks the stored manifests and roots of the
// reference backpacks against the facts in expected.json.
func TestStoredManifests(t *testing.T) {
	for _, name := range backpacks {
		t.Run(name, func(t *testing.T) {
			want := expected(t, name)
			data := conformance.ReadFile(t, name, "manifest.json")
			m, err := merkle.ParseManifest(data)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if canonical := bytes.Equal(enc, data); canonical != want.ManifestJSONIsCanonicalNoNewline {
				t.Errorf("re-encoding equals the file: %v, expected.json says canonical: %v\n got %s\nfile %s", canonical, want.ManifestJSONIsCanonicalNoNewline, enc, data)
			}
			if int(m.FileCount) != want.ManifestFileCount || len(m.Files) != want.ManifestFileCount {
				t.Errorf("file_count %d, %d files, want %d", m.FileCount, len(m.Files), want.ManifestFileCount)
			}
			if m.SpecVersion != merkle.SpecVersion || m.ManifestVersion != merkle.ManifestVersion || m.Extra != nil {
				t.Errorf("versions %q %q, extra %v", m.SpecVersion, m.ManifestVersion, m.Extra)
			}
			ref, err := merkle.ReferenceRoot(m.Files)
			if err != nil || ref.String() != want.MerkleRootFromStoredManifest {
				t.Errorf("ReferenceRoot = %s (%v), want %s", ref, err, want.MerkleRootFromStoredManifest)
			}
			root, err := m.Root()
			if err != nil || root != ref {
				t.Errorf("Root = %s (%v), want %s", root, err, ref)
			}
			stored, err := merkle.ParseRootFile(conformance.ReadFile(t, name, "merkle_root.txt"))
			if err != nil || stored.String() != want.MerkleRootStored {
				t.Errorf("merkle_root.txt = %s (%v), want %s", stored, err, want.MerkleRootStored)
			}
			if got := merkle.EncodeRootFile(stored); !bytes.Equal(got, conformance.ReadFile(t, name, "merkle_root.txt")) {
				t.Errorf("EncodeRootFile = %q", got)
			}
			// Rebuilding from the parts gives the same bytes.
			m2, err := merkle.NewManifest(m.CreatedAtUTC, m.Files)
			if err != nil {
				t.Fatal(err)
			}
			if enc2, _ := m2.Encode(); !bytes.Equal(enc2, data) {
				t.Errorf("NewManifest encoding differs:\n%s\n%s", enc2, data)
			}
		})
	}
}

func TestManifestEncodeShape(t *testing.T) {
	m, err := merkle.NewManifest("2026-01-02T03:04:05+00:00", []merkle.Entry{
		{Path: "a.txt", SHA256: merkle.EmptyRoot.String(), Size: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"backpack_spec_version":"1.0","created_at_utc":"2026-01-02T03:04:05+00:00","file_count":1,"files":[{"path":"a.txt","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}],"manifest_version":"manifest.v0"}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	empty, _ := merkle.NewManifest("t", nil)
	if got, _ := empty.Encode(); string(got) != `{"backpack_spec_version":"1.0","created_at_utc":"t","file_count":0,"files":[],"manifest_version":"manifest.v0"}` {
		t.Errorf("empty manifest %s", got)
	}
	m.Extra = []canon.Member{{Key: "files", Value: canon.NullValue()}}
	if _, err := m.Encode(); err == nil {
		t.Error("extra member shadowing files accepted")
	}
}

// TestParseManifestKeepsOddValues: values that are wrong but well typed
// are kept, so that Verify can report them and Encode reproduces them.
func TestParseManifestKeepsOddValues(t *testing.T) {
	in := `{"backpack_spec_version":"2.0","created_at_utc":"x","extra":{"k":[1.5]},"file_count":7,"files":[` +
		`{"path":"b","sha256":"NOT HEX","size":-1},{"mode":420,"path":"a","sha256":"","size":0},{"path":"a","sha256":"","size":0},` +
		`{"path":"../up","sha256":"","size":100000000000}],"manifest_version":"manifest.v9"}`
	m, err := merkle.ParseManifest([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.SpecVersion != "2.0" || m.FileCount != 7 || len(m.Files) != 4 || m.ManifestVersion != "manifest.v9" {
		t.Errorf("parsed %+v", m)
	}
	if len(m.Extra) != 1 || m.Extra[0].Key != "extra" || len(m.Files[1].Extra) != 1 || m.Files[1].Extra[0].Key != "mode" {
		t.Errorf("extras %v / %v", m.Extra, m.Files[1].Extra)
	}
	if m.Files[0].SHA256 != "NOT HEX" || m.Files[0].Size != -1 || m.Files[3].Size != 100000000000 {
		t.Errorf("entries %+v", m.Files)
	}
	got, err := m.Encode()
	if err != nil || string(got) != in {
		t.Errorf("re-encoded %s (%v)", got, err)
	}
	if _, err := m.Root(); !errors.Is(err, merkle.ErrUnsorted) {
		t.Errorf("Root of unsorted stored manifest: %v", err)
	}
}

func TestParseManifestErrors(t *testing.T) {
	good := `{"backpack_spec_version":"1.0","created_at_utc":"t","file_count":1,"files":[{"path":"a","sha256":"","size":0}],"manifest_version":"manifest.v0"}`
	if _, err := merkle.ParseManifest([]byte(good)); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in manifest", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name, in, msg string
	}{
		{"not json", `{"files":`, "invalid JSON"},
		{"trailing garbage", good + "x", "extra data"},
		{"array", `[]`, "top level is array"},
		{"missing files", replace(`"files":[{"path":"a","sha256":"","size":0}],`, ``), "missing files"},
		{"files not array", replace(`[{"path":"a","sha256":"","size":0}]`, `{}`), "files is object"},
		{"entry not object", replace(`{"path":"a","sha256":"","size":0}`, `"a"`), "files[0] is string"},
		{"missing path", replace(`"path":"a",`, ``), "missing files[0].path"},
		{"path not string", replace(`"path":"a"`, `"path":1`), "files[0].path is int"},
		{"sha256 not string", replace(`"sha256":""`, `"sha256":null`), "files[0].sha256 is null"},
		{"size float", replace(`"size":0`, `"size":0.0`), "files[0].size is float, want integer"},
		{"size exponent", replace(`"size":0`, `"size":1e3`), "files[0].size is float"},
		{"size string", replace(`"size":0`, `"size":"0"`), "files[0].size is string"},
		{"size bool", replace(`"size":0`, `"size":true`), "files[0].size is bool"},
		{"size huge", replace(`"size":0`, `"size":99999999999999999999`), "does not fit in 64 bits"},
		{"file_count float", replace(`"file_count":1`, `"file_count":1.0`), "file_count is float"},
		{"missing spec version", replace(`"backpack_spec_version":"1.0",`, ``), "missing backpack_spec_version"},
		{"spec version number", replace(`"backpack_spec_version":"1.0"`, `"backpack_spec_version":1.0`), "backpack_spec_version is float"},
		{"missing created", replace(`"created_at_utc":"t",`, ``), "missing created_at_utc"},
		{"missing manifest_version", replace(`,"manifest_version":"manifest.v0"`, ``), "missing manifest_version"},
		{"lone surrogate", replace(`"path":"a"`, `"path":"\ud800"`), "invalid JSON"},
		{"bom", "\ufeff" + good, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := merkle.ParseManifest([]byte(tt.in))
			if !errors.Is(err, merkle.ErrMalformed) {
				t.Fatalf("error = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestParseManifestLimits(t *testing.T) {
	good := []byte(`{"backpack_spec_version":"1.0","created_at_utc":"t","file_count":2,"files":[{"path":"a","sha256":"","size":0},{"path":"b","sha256":"","size":0}],"manifest_version":"manifest.v0"}`)
	if _, err := (merkle.Limits{MaxFiles: 1}).ParseManifest(good); !errors.Is(err, merkle.ErrTooLarge) {
		t.Errorf("MaxFiles: %v", err)
	}
	if _, err := (merkle.Limits{MaxSize: len(good) - 1}).ParseManifest(good); !errors.Is(err, merkle.ErrTooLarge) {
		t.Errorf("MaxSize: %v", err)
	}
	if _, err := (merkle.Limits{MaxSize: len(good), MaxFiles: 2}).ParseManifest(good); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	deep := `{"backpack_spec_version":"1.0","created_at_utc":"t","file_count":0,"files":[],"manifest_version":"manifest.v0","x":` +
		strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
	if _, err := merkle.ParseManifest([]byte(deep)); !errors.Is(err, merkle.ErrTooLarge) {
		t.Errorf("deep nesting: %v", err)
	}
}

func TestRootFile(t *testing.T) {
	const hex = "38b712d2bd5ac747e0a21a613bd679b95350c53c7c463f74d8a86dad3b6eca84"
	for _, in := range []string{hex, hex + "\n", hex + "\r\n", "  " + hex + "\t\n\n", "\x1c" + hex + "\u00a0\u2028"} {
		h, err := merkle.ParseRootFile([]byte(in))
		if err != nil || h.String() != hex {
			t.Errorf("ParseRootFile(%q) = %s, %v", in, h, err)
		}
	}
	for _, in := range []string{"", "\n", strings.ToUpper(hex), hex + "x", hex[:10] + " " + hex[10:], strings.Repeat(" ", 5000) + hex} {
		if _, err := merkle.ParseRootFile([]byte(in)); !errors.Is(err, merkle.ErrBadHash) {
			t.Errorf("ParseRootFile(%q) error = %v", in, err)
		}
	}
	h, _ := merkle.ParseHash(hex)
	if got := string(merkle.EncodeRootFile(h)); got != hex+"\n" {
		t.Errorf("EncodeRootFile = %q", got)
	}
}
