package merkle_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

// seedFiles adds the reference backpacks' copies of name to f's corpus.
func seedFiles(f *testing.F, name string) {
	dir, err := conformance.Find()
	if err != nil {
		return
	}
	for _, bp := range backpacks {
		if b, err := os.ReadFile(filepath.Join(dir, bp, name)); err == nil {
			f.Add(b)
		}
	}
}

// FuzzParseManifest requires that ParseManifest never panics, that every
// manifest it accepts encodes, and that the encoding parses back to the
// same bytes; when the input was canonical JSON, encoding reproduces it.
func FuzzParseManifest(f *testing.F) {
	seedFiles(f, "manifest.json")
	for _, s := range []string{
		`{"backpack_spec_version":"1.0","created_at_utc":"t","file_count":0,"files":[],"manifest_version":"manifest.v0"}`,
		`{"backpack_spec_version":"2.0","created_at_utc":"x","extra":{"k":[1.5]},"file_count":7,"files":[{"path":"b","sha256":"NOT HEX","size":-1},{"mode":420,"path":"a","sha256":"","size":0}],"manifest_version":"manifest.v9"}`,
		`{"files":[{"path":"a","sha256":"","size":1.0}]}`,
		`{"backpack_spec_version":"1.0","created_at_utc":"t","file_count":1,"files":[{"path":"\u00e9/\ud83d\ude00","sha256":"","size":99999999999999999999}],"manifest_version":"manifest.v0"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := merkle.ParseManifest(data)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		if v, err := canon.Parse(data); err == nil {
			if c, err := canon.Encode(v); err == nil && bytes.Equal(c, data) && !bytes.Equal(enc, data) {
				t.Fatalf("canonical input %q re-encoded as %q", data, enc)
			}
		}
		m2, err := merkle.ParseManifest(enc)
		if err != nil {
			t.Fatalf("encoding %q does not parse: %v", enc, err)
		}
		enc2, err := m2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed %q to %q (%v)", enc, enc2, err)
		}
		// The reference-order root is always computable for accepted input.
		if _, err := merkle.ReferenceRoot(m.Files); err != nil {
			t.Fatalf("ReferenceRoot: %v", err)
		}
	})
}

// FuzzParseManifestSig requires that ParseManifestSig never panics and
// that accepted records re-encode to a file that parses to the same record.
func FuzzParseManifestSig(f *testing.F) {
	seedFiles(f, "manifest.sig")
	f.Add([]byte(`{"merkle_root":"r","key_id":"k","spec_version":"1.0","signed_at_utc":"t","sig":"s","x":[1,{"y":null}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := merkle.ParseManifestSig(data)
		if err != nil {
			return
		}
		if _, err := r.SignedBytes(); err != nil {
			t.Fatalf("SignedBytes: %v", err)
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		r2, err := merkle.ParseManifestSig(enc)
		if err != nil {
			t.Fatalf("encoding %q does not parse: %v", enc, err)
		}
		enc2, err := r2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed %q to %q", enc, enc2)
		}
	})
}
