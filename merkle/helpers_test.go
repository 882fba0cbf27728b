package merkle_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

// backpacks are the reference backpacks in the conformance data.
var backpacks = []string{"reference_backpack", "demo_backpack"}

// expectedFacts is the part of expected.json about one backpack that this
// package reproduces.
type expectedFacts struct {
	MerkleRootStored                 string `json:"merkle_root_stored"`
	MerkleRootFromStoredManifest     string `json:"merkle_root_from_stored_manifest"`
	MerkleRootFromDiskWalk           string `json:"merkle_root_from_disk_walk"`
	ManifestFileCount                int    `json:"manifest_file_count"`
	ManifestFilesMatchDisk           bool   `json:"manifest_files_match_disk"`
	ManifestJSONIsCanonicalNoNewline bool   `json:"manifest_json_is_canonical_no_newline"`
	ManifestSigKeyID                 string `json:"manifest_sig_key_id"`
	ManifestSigSignatureValid        bool   `json:"manifest_sig_signature_valid"`
	ManifestSigMerkleRoot            string `json:"manifest_sig_merkle_root"`
	ManifestSigMatchesCurrentRoot    bool   `json:"manifest_sig_matches_current_root"`
}

func expected(t *testing.T, backpack string) expectedFacts {
	t.Helper()
	var all map[string]json.RawMessage
	conformance.DecodeStd(t, &all, "expected.json")
	raw, ok := all[backpack]
	if !ok {
		t.Fatalf("expected.json has no %s", backpack)
	}
	var f expectedFacts
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// extraVectors returns extra_vectors.json parsed with canon.
func extraVectors(t *testing.T) canon.Value {
	t.Helper()
	v, err := canon.Parse(conformance.ReadFile(t, "extra_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// testKey returns the private key of the named key in extra_vectors.json
// test_keys, and its key id.
func testKey(t *testing.T, name string) (ed25519.PrivateKey, string) {
	t.Helper()
	for _, k := range extraVectors(t).Field("test_keys").Elems() {
		if k.Field("name").Str() != name {
			continue
		}
		seed, err := hex.DecodeString(k.Field("seed_hex").Str())
		if err != nil {
			t.Fatal(err)
		}
		return ed25519.NewKeyFromSeed(seed), k.Field("key_id").Str()
	}
	t.Fatalf("no test key %s", name)
	return nil, ""
}

// publicKeyOf finds keyID's public key in a backpack's identity/keys.json.
func publicKeyOf(t *testing.T, dir, keyID string) ed25519.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "identity", "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := canon.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range v.Field("keys").Elems() {
		if k.Field("key_id").Str() == keyID {
			b, err := base64.StdEncoding.DecodeString(k.Field("public_key_b64").Str())
			if err != nil || len(b) != ed25519.PublicKeySize {
				t.Fatalf("bad public key for %s: %v", keyID, err)
			}
			return b
		}
	}
	t.Fatalf("key %s not in %s", keyID, dir)
	return nil
}

// entriesOf converts a canon array of entry objects.
func entriesOf(t *testing.T, v canon.Value) []merkle.Entry {
	t.Helper()
	var out []merkle.Entry
	for _, e := range v.Elems() {
		size, ok := e.Field("size").Int64()
		if !ok {
			t.Fatalf("entry size %v", e.Field("size"))
		}
		out = append(out, merkle.Entry{Path: e.Field("path").Str(), SHA256: e.Field("sha256").Str(), Size: size})
	}
	return out
}

// copyTree copies the directory src to a new temporary directory, making
// everything writable (the shared data is read-only), and returns it.
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func mustReadFile(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
