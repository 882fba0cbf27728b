package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/backpack-field/backpack/internal/cli"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// keyIDs returns the key ids identity/keys.json of dir lists.
func keyIDs(t *testing.T, dir string) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			KeyID  string `json:"key_id"`
			Public string `json:"public_key_b64"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "identity", "keys.json")), &doc); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range doc.Keys {
		ids = append(ids, k.KeyID)
	}
	return ids
}

// publicKey returns the public_key_b64 of dir's first key.
func publicKey(t *testing.T, dir string) string {
	t.Helper()
	var doc struct {
		Keys []struct {
			Public string `json:"public_key_b64"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "identity", "keys.json")), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Keys[0].Public
}

// rewriteHeader changes the header line of a backpack bundle (the event
// section, and so content_sha256, stay as they are).
func rewriteHeader(t *testing.T, bundle []byte, fn func(head string) string) []byte {
	t.Helper()
	zr, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	content, err := zr.DecodeAll(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	head, rest, _ := bytes.Cut(content, []byte("\n"))
	changed := fn(string(head))
	if changed == string(head) {
		t.Fatal("rewriteHeader changed nothing")
	}
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return zw.EncodeAll(append([]byte(changed+"\n"), rest...), nil)
}

// header returns the decoded header of a backpack bundle.
func bundleHeader(t *testing.T, bundle []byte) map[string]any {
	t.Helper()
	var h map[string]any
	rewriteHeader(t, bundle, func(head string) string {
		if err := json.Unmarshal([]byte(head), &h); err != nil {
			t.Fatal(err)
		}
		return head + " "
	})
	return h
}

// TestJoinFromBundle: a device joins from a full export alone; the result
// equals a join from the directory. It works, exports; the first device
// quarantines its events, records its key as seen, lists it, and trusts
// it by id.
func TestJoinFromBundle(t *testing.T) {
	base := isolate(t)
	a := filepath.Join(base, "a")
	mustRun(t, "init", a, "--actor", "base_camp")
	for i := range 3 {
		mustRun(t, "append", a, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", fmt.Sprint(i))
	}
	full := filepath.Join(base, "full.bpk")
	mustRun(t, "export", a, "-o", full)
	h := bundleHeader(t, readFile(t, full))
	files, _ := h["files"].(map[string]any)
	for _, p := range []string{"identity/genesis.json", "identity/keys.json", "policies/sync_contract.json", "policies/ontology/perception_ontology_v1.json"} {
		if _, ok := files[p]; !ok {
			t.Errorf("full export lacks %s: %v", p, files)
		}
	}
	if _, ok := h["sender_public_key_b64"]; !ok {
		t.Error("export lacks sender_public_key_b64")
	}

	fromDir, fromBundle := filepath.Join(base, "from_dir"), filepath.Join(base, "from_bundle")
	mustRun(t, "join", a, fromDir, "--actor", "tablet_dir")
	out := mustRun(t, "join", full, fromBundle, "--actor", "field_tablet")
	if !strings.Contains(out, "fingerprint") || !strings.Contains(out, "5 imported") {
		t.Fatalf("join from bundle: %s", out)
	}
	for _, f := range []string{"events/events.ndjson", "identity/genesis.json", "policies/safety_policy.json", "policies/ontology/perception_ontology_v1.json"} {
		if x, y := readFile(t, filepath.Join(fromDir, f)), readFile(t, filepath.Join(fromBundle, f)); !bytes.Equal(x, y) {
			t.Errorf("%s differs between a join from the directory and from the bundle", f)
		}
	}
	if x, y := mustRun(t, "state", fromDir, "--hash"), mustRun(t, "state", fromBundle, "--hash"); x != y {
		t.Errorf("state hash %s from the directory, %s from the bundle", x, y)
	}
	if x, y := keyIDs(t, fromDir), keyIDs(t, fromBundle); len(x) != 2 || len(y) != 2 || x[0] != y[0] {
		t.Errorf("keys.json: %v from the directory, %v from the bundle", x, y)
	}
	mustRun(t, "verify", fromBundle, "-q")
	if out := mustRun(t, "join", full, filepath.Join(base, "again"), "--json"); !strings.Contains(out, `"imported": 5`) {
		t.Errorf("join --json: %s", out)
	}

	// The joined device works and exports; the first device learns of it.
	tablet := keyIDs(t, fromBundle)[1]
	mustRun(t, "append", fromBundle, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", "7")
	frontier := filepath.Join(base, "a.frontier")
	os.WriteFile(frontier, []byte(mustRun(t, "frontier", a)), 0o644)
	delta := filepath.Join(base, "tablet.bpk")
	mustRun(t, "export", fromBundle, "-o", delta, "--since", frontier)
	if _, ok := bundleHeader(t, readFile(t, delta))["files"]; ok {
		t.Error("a delta carries files")
	}
	keysBefore := readFile(t, filepath.Join(a, "identity", "keys.json"))
	out = mustRun(t, "import", a, delta)
	if !strings.Contains(out, "quarantined") || !strings.Contains(out, "seen untrusted key "+tablet) || !strings.Contains(out, "backpack trust") {
		t.Fatalf("import from the untrusted device: %s", out)
	}
	if !bytes.Equal(keysBefore, readFile(t, filepath.Join(a, "identity", "keys.json"))) {
		t.Fatal("import changed keys.json: a carried key was trusted")
	}
	seenFiles, _ := filepath.Glob(filepath.Join(base, "state", "backpack", "*", "seen-keys", tablet+".json"))
	if len(seenFiles) != 1 {
		t.Fatalf("seen key records: %v", seenFiles)
	}
	var rec map[string]any
	if err := json.Unmarshal(readFile(t, seenFiles[0]), &rec); err != nil || rec["waiting_events"] != 1.0 || rec["key_id"] != tablet {
		t.Errorf("seen key record: %v %v", rec, err)
	}
	fp := strings.TrimPrefix(tablet, "bp1_")
	fp = fp[:4] + " " + fp[4:8] + " " + fp[8:12] + " " + fp[12:]
	if out := mustRun(t, "quarantine", a); !strings.Contains(out, "untrusted key "+tablet+"  fingerprint "+fp+"  1 events wait; seen in") {
		t.Errorf("quarantine list: %s", out)
	}
	var q struct {
		Keys []struct {
			KeyID   string `json:"key_id"`
			ByID    bool   `json:"trust_by_id"`
			Waiting int    `json:"waiting_events"`
		} `json:"untrusted_keys"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "quarantine", a, "--json")), &q); err != nil || len(q.Keys) != 1 || !q.Keys[0].ByID || q.Keys[0].Waiting != 1 {
		t.Errorf("quarantine --json: %+v %v", q, err)
	}

	// A key never seen cannot be trusted by id.
	if out, code := run(t, "", "trust", a, "bp1_0123456789abcdef"); code == 0 || !strings.Contains(out, "has not been seen in any bundle") {
		t.Errorf("trust of an unseen id: %d %s", code, out)
	}
	out = mustRun(t, "trust", a, tablet)
	if !strings.Contains(out, fp) || !strings.Contains(out, "waiting      1 events") || !strings.Contains(out, "1 applied") {
		t.Fatalf("trust by id: %s", out)
	}
	if ids := keyIDs(t, a); len(ids) != 2 || ids[1] != tablet {
		t.Errorf("keys.json after trust: %v", ids)
	}
	if out := mustRun(t, "quarantine", a); !strings.Contains(out, "nothing held") || strings.Contains(out, "untrusted key") {
		t.Errorf("quarantine after trust: %s", out)
	}
	log := readFile(t, filepath.Join(a, "events", "events.ndjson"))
	if out := mustRun(t, "import", a, delta); !strings.Contains(out, "0 applied, 1 already held") || strings.Contains(out, "seen untrusted") {
		t.Errorf("re-import: %s", out)
	}
	if !bytes.Equal(log, readFile(t, filepath.Join(a, "events", "events.ndjson"))) {
		t.Error("re-import changed the log")
	}
	if out, code := run(t, "", "trust", a, tablet); code == 0 || !strings.Contains(out, "already trusted") {
		t.Errorf("second trust: %d %s", code, out)
	}
	mustRun(t, "verify", a, "-q")
	// The tablet learns it is trusted, and the two converge.
	mustRun(t, "merge", fromBundle, a)
	for _, f := range []string{"events/events.ndjson", "identity/keys.json"} {
		if x, y := readFile(t, filepath.Join(a, f)), readFile(t, filepath.Join(fromBundle, f)); !bytes.Equal(x, y) {
			t.Errorf("%s differs after trust and merge", f)
		}
	}
}

func TestJoinRefuses(t *testing.T) {
	base := isolate(t)
	a := filepath.Join(base, "a")
	mustRun(t, "init", a)
	frontier := filepath.Join(base, "a.frontier")
	os.WriteFile(frontier, []byte(mustRun(t, "frontier", a)), 0o644)
	delta := filepath.Join(base, "delta.bpk")
	mustRun(t, "export", a, "-o", delta, "--since", frontier)
	if out, code := run(t, "", "join", delta, filepath.Join(base, "x")); code == 0 || !strings.Contains(out, "not a full-history bundle: export it without --since") {
		t.Errorf("join from a delta: %d %s", code, out)
	}
	ref := filepath.Join(base, "a.provara")
	mustRun(t, "export", a, "-o", ref, "--format", "provara")
	if out, code := run(t, "", "join", ref, filepath.Join(base, "x")); code == 0 || !strings.Contains(out, "provara_delta_v1") {
		t.Errorf("join from a provara bundle: %d %s", code, out)
	}
	peer := filepath.Join(base, "peer")
	os.MkdirAll(peer, 0o755)
	if out, code := run(t, "", "join", peer, filepath.Join(base, "x")); code != cli.ExitError || !strings.Contains(out, "holds no backpack") {
		t.Errorf("join from an empty folder: %d %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(base, "x")); err == nil {
		t.Error("a refused join left NEWDIR behind")
	}

	// A full export whose files were changed after signing.
	full := filepath.Join(base, "full.bpk")
	mustRun(t, "export", a, "-o", full)
	tampered := rewriteHeader(t, readFile(t, full), func(head string) string {
		i := strings.Index(head, `"policies/safety_policy.json":"`) + len(`"policies/safety_policy.json":"`)
		c := byte('A')
		if head[i] == 'A' {
			c = 'B'
		}
		return head[:i] + string(c) + head[i+1:]
	})
	bad := filepath.Join(base, "tampered.bpk")
	os.WriteFile(bad, tampered, 0o644)
	if out, code := run(t, "", "join", bad, filepath.Join(base, "y")); code == 0 || !strings.Contains(out, "signature") {
		t.Errorf("join from a tampered bundle: %d %s", code, out)
	}
	if out, code := run(t, "", "import", a, bad); code != cli.ExitFailed || !strings.Contains(out, "REFUSED") {
		t.Errorf("import of a tampered bundle: %d %s", code, out)
	}
}

// TestCarriedKeyChecked: a bundle whose sender_public_key_b64 is not the
// key of sender_key_id is refused; so is one from an untrusted sender
// whose header does not verify with the key it carries.
func TestCarriedKeyChecked(t *testing.T) {
	base := isolate(t)
	a, other := filepath.Join(base, "a"), filepath.Join(base, "other")
	mustRun(t, "init", a)
	mustRun(t, "init", other)
	b := filepath.Join(base, "b")
	mustRun(t, "join", a, b)
	full := filepath.Join(base, "b.bpk")
	mustRun(t, "export", b, "-o", full)
	data := readFile(t, full)
	own := bundleHeader(t, data)["sender_public_key_b64"].(string)
	mismatch := rewriteHeader(t, data, func(head string) string {
		return strings.Replace(head, own, publicKey(t, other), 1)
	})
	p := filepath.Join(base, "mismatch.bpk")
	os.WriteFile(p, mismatch, 0o644)
	if out, code := run(t, "", "import", a, p); code != cli.ExitFailed || !strings.Contains(out, "sender_public_key_b64") {
		t.Errorf("import, mismatched key: %d %s", code, out)
	}
	if out, code := run(t, "", "join", p, filepath.Join(base, "c")); code == 0 || !strings.Contains(out, "sender_public_key_b64") {
		t.Errorf("join, mismatched key: %d %s", code, out)
	}
	// Untrusted sender, header changed after signing: refused, no key seen.
	changed := rewriteHeader(t, data, func(head string) string {
		return strings.Replace(head, `"created_at_utc":"`, `"created_at_utc":"1`, 1)
	})
	p = filepath.Join(base, "changed.bpk")
	os.WriteFile(p, changed, 0o644)
	if out, code := run(t, "", "import", a, p); code != cli.ExitFailed || !strings.Contains(out, "does not verify with the sender key it carries") {
		t.Errorf("import, changed header: %d %s", code, out)
	}
	if seen, _ := filepath.Glob(filepath.Join(base, "state", "backpack", "*", "seen-keys", "*.json")); len(seen) != 0 {
		t.Errorf("a bundle that does not verify recorded keys: %v", seen)
	}
}

// TestExportFileLimits: a backpack with more policy files than a bundle
// carries cannot be exported in full (a clear error), but deltas still go;
// private key files are never carried.
func TestExportFileLimits(t *testing.T) {
	base := isolate(t)
	a := filepath.Join(base, "a")
	mustRun(t, "init", a)
	os.WriteFile(filepath.Join(a, "policies", "private_keys.json"), []byte(`{"secret":1}`), 0o600)
	full := filepath.Join(base, "full.bpk")
	mustRun(t, "export", a, "-o", full)
	for p := range bundleHeader(t, readFile(t, full))["files"].(map[string]any) {
		if strings.Contains(p, "private") {
			t.Errorf("export carries %s", p)
		}
	}
	for i := range 70 {
		os.WriteFile(filepath.Join(a, "policies", fmt.Sprintf("extra_%02d.json", i)), []byte("{}\n"), 0o644)
	}
	if out, code := run(t, "", "export", a, "-o", full); code == 0 || !strings.Contains(out, "a bundle carries at most 64") {
		t.Errorf("export with too many files: %d %s", code, out)
	}
	frontier := filepath.Join(base, "a.frontier")
	os.WriteFile(frontier, []byte(mustRun(t, "frontier", a)), 0o644)
	mustRun(t, "export", a, "-o", filepath.Join(base, "delta.bpk"), "--since", frontier)
	for i := range 70 {
		os.Remove(filepath.Join(a, "policies", fmt.Sprintf("extra_%02d.json", i)))
	}
	os.WriteFile(filepath.Join(a, "policies", "huge.json"), bytes.Repeat([]byte(" "), 300<<10), 0o644)
	if out, code := run(t, "", "export", a, "-o", full); code == 0 || !strings.Contains(out, "policies/huge.json") {
		t.Errorf("export with a huge file: %d %s", code, out)
	}
}

// TestSeenKeyFromReferenceBundle: a provara_delta_v1 bundle carries the
// exporter's keys.json; the key that the quarantined events wait for is
// recorded as seen (trusted keys and keys nothing waits for are not), and
// can then be trusted by id.
func TestSeenKeyFromReferenceBundle(t *testing.T) {
	base := isolate(t)
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	mustRun(t, "init", a)
	mustRun(t, "join", a, b)
	mustRun(t, "append", b, "--type", "OBSERVATION", "--subject", "gate", "--predicate", "open", "--value", "true")
	ref := filepath.Join(base, "b.provara")
	mustRun(t, "export", b, "-o", ref, "--format", "provara")
	joined := keyIDs(t, b)[1]
	if out := mustRun(t, "import", a, ref); !strings.Contains(out, "seen untrusted key "+joined) || strings.Count(out, "seen untrusted key") != 1 {
		t.Fatalf("import: %s", out)
	}
	if out := mustRun(t, "trust", a, joined); !strings.Contains(out, "1 applied") {
		t.Fatalf("trust by id: %s", out)
	}
	mustRun(t, "verify", a, "-q")
}
