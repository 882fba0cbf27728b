package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/cli"
)

func isolate(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "state"))
	t.Setenv("BACKPACK_KEY", "")
	return base
}

func run(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := cli.Main(context.Background(), args, strings.NewReader(stdin), &out, &out)
	return out.String(), code
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, code := run(t, "", args...)
	if code != 0 {
		t.Fatalf("backpack %v: exit %d\n%s", args, code, out)
	}
	return out
}

func TestEndToEnd(t *testing.T) {
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	var res map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "init", dir, "--actor", "surveyor", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res["actor"] != "surveyor" {
		t.Errorf("init: %v", res)
	}
	mustRun(t, "append", dir, "--type", "OBSERVATION", "--subject", "door_01", "--predicate", "status", "--value", "open", "--confidence", "0.9")
	if out, code := run(t, `{"type":"ASSERTION","payload":{"subject":"door_01","predicate":"status","value":"closed"}}`+"\n", "append", dir, "--event", "-", "--json"); code != 0 || !strings.Contains(out, `"appended"`) {
		t.Fatalf("append --event: %d %s", code, out)
	}
	out := mustRun(t, "verify", dir)
	if !strings.Contains(out, "OK: 0 failures") {
		t.Errorf("verify: %s", out)
	}
	hash := strings.TrimSpace(mustRun(t, "state", dir, "--hash"))
	if len(hash) != 64 || !strings.Contains(out, hash) {
		t.Errorf("state --hash %q not the hash verify replayed", hash)
	}
	// The assertion disagrees with a confident observation: contested.
	if out := mustRun(t, "state", dir, "--namespace", "contested"); !strings.Contains(out, `"door_01:status"`) || !strings.Contains(out, `"\"open\""`) {
		t.Errorf("state: %s", out)
	}
	if out := mustRun(t, "log", dir); strings.Count(out, "\n") != 4 || !strings.Contains(out, "door_01:status") {
		t.Errorf("log: %s", out)
	}
	if out := mustRun(t, "forks", dir); !strings.Contains(out, "no forks") {
		t.Errorf("forks: %s", out)
	}
	var fr struct {
		Actors map[string]struct {
			Count int    `json:"count"`
			Head  string `json:"head"`
		} `json:"actors"`
		Format string `json:"format"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "frontier", dir)), &fr); err != nil || fr.Actors["surveyor"].Count != 4 || fr.Format != "backpack.frontier.v1" {
		t.Errorf("frontier: %+v %v", fr, err)
	}
	mustRun(t, "checkpoint", dir)
	mustRun(t, "manifest", dir)
	mustRun(t, "verify", dir, "-q")
}

func TestExitCodes(t *testing.T) {
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	if _, code := run(t, "", "nonsense"); code != cli.ExitUsage {
		t.Errorf("unknown command: %d", code)
	}
	if _, code := run(t, "", "verify"); code != cli.ExitUsage {
		t.Errorf("missing arg: %d", code)
	}
	if _, code := run(t, "", "verify", filepath.Join(base, "nothing")); code != cli.ExitNotFound {
		t.Errorf("not a backpack: %d", code)
	}
	if out, code := run(t, "", "append", "--help"); code != 0 || !strings.Contains(out, "--subject") {
		t.Errorf("--help: %d %s", code, out)
	}
	mustRun(t, "init", dir)
	// Without its key (moved away), append says so with its own code.
	keys, _ := filepath.Glob(filepath.Join(base, "config", "backpack", "keys", "*.json"))
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	os.Rename(keys[0], filepath.Join(base, "key.json"))
	if out, code := run(t, "", "append", dir, "--type", "OBSERVATION", "--subject", "a", "--predicate", "b", "--value", "1"); code != cli.ExitNoKey {
		t.Errorf("no key: %d %s", code, out)
	}
	mustRun(t, "append", dir, "--key", filepath.Join(base, "key.json"), "--type", "OBSERVATION", "--subject", "a", "--predicate", "b", "--value", "1")
	// A tampered log fails verify with exit 1.
	p := filepath.Join(dir, "events", "events.ndjson")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(data, []byte(`"value":1`), []byte(`"value":2`), 1), 0o644)
	if out, code := run(t, "", "verify", dir); code != cli.ExitFailed || !strings.Contains(out, "line 3") {
		t.Errorf("tampered: %d %s", code, out)
	}
}

func TestDemo(t *testing.T) {
	isolate(t)
	out, code := run(t, "", "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s", code, out)
	}
	for _, s := range []string{"Demo complete", "contested", "FAILED", "quarantine"} {
		if !strings.Contains(out, s) {
			t.Errorf("demo output lacks %q", s)
		}
	}
}

func TestMergeReplicas(t *testing.T) {
	base := isolate(t)
	a := filepath.Join(base, "a")
	mustRun(t, "init", a, "--actor", "north")
	b := filepath.Join(base, "b")
	if err := os.CopyFS(b, os.DirFS(a)); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "append", a, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", "3")
	mustRun(t, "append", b, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", "4", "--actor", "south")
	if out := mustRun(t, "merge", a, b); !strings.Contains(out, "1 applied") {
		t.Errorf("merge a<-b: %s", out)
	}
	if out := mustRun(t, "merge", b, a); !strings.Contains(out, "1 applied") {
		t.Errorf("merge b<-a: %s", out)
	}
	la, _ := os.ReadFile(filepath.Join(a, "events", "events.ndjson"))
	lb, _ := os.ReadFile(filepath.Join(b, "events", "events.ndjson"))
	if !bytes.Equal(la, lb) {
		t.Errorf("replicas differ after merging both ways")
	}
	mustRun(t, "verify", a, "-q")
	mustRun(t, "verify", b, "-q")
	if out := mustRun(t, "merge", a, b); !strings.Contains(out, "0 applied") {
		t.Errorf("second merge: %s", out)
	}
}

func TestExportImport(t *testing.T) {
	base := isolate(t)
	a := filepath.Join(base, "a")
	mustRun(t, "init", a, "--actor", "north")
	b := filepath.Join(base, "b")
	if err := os.CopyFS(b, os.DirFS(a)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustRun(t, "append", a, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", fmt.Sprint(i))
	}
	frontier := filepath.Join(base, "b.frontier")
	os.WriteFile(frontier, []byte(mustRun(t, "frontier", b)), 0o644)
	bundle := filepath.Join(base, "delta.bpk")
	if out := mustRun(t, "export", a, "-o", bundle, "--since", frontier); !strings.Contains(out, "exported 3 events") {
		t.Fatalf("export: %s", out)
	}
	if out := mustRun(t, "import", b, bundle); !strings.Contains(out, "3 applied") {
		t.Fatalf("import: %s", out)
	}
	before, _ := os.ReadFile(filepath.Join(b, "events", "events.ndjson"))
	if out := mustRun(t, "import", b, bundle); !strings.Contains(out, "0 applied, 3 already held") {
		t.Fatalf("second import: %s", out)
	}
	after, _ := os.ReadFile(filepath.Join(b, "events", "events.ndjson"))
	la, _ := os.ReadFile(filepath.Join(a, "events", "events.ndjson"))
	if !bytes.Equal(before, after) || !bytes.Equal(after, la) {
		t.Fatalf("import not idempotent or replicas differ")
	}
	mustRun(t, "verify", b, "-q")

	// A flipped byte: refused as a whole, kept in the quarantine, exit 1.
	data, _ := os.ReadFile(bundle)
	data[len(data)/2] ^= 0x40
	bad := filepath.Join(base, "bad.bpk")
	os.WriteFile(bad, data, 0o644)
	if out, code := run(t, "", "import", b, bad); code != cli.ExitFailed || !strings.Contains(out, "REFUSED") {
		t.Fatalf("damaged bundle: %d %s", code, out)
	}
	if now, _ := os.ReadFile(filepath.Join(b, "events", "events.ndjson")); !bytes.Equal(now, after) {
		t.Fatal("damaged bundle changed the log")
	}

	// The reference's format, both ways.
	ref := filepath.Join(base, "delta.provara")
	mustRun(t, "append", a, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", "9")
	mustRun(t, "export", a, "-o", ref, "--format", "provara")
	if out := mustRun(t, "import", b, ref); !strings.Contains(out, "1 applied") {
		t.Fatalf("import provara: %s", out)
	}
	mustRun(t, "verify", b, "-q")
}

func TestQuarantineCommand(t *testing.T) {
	base := isolate(t)
	a, other := filepath.Join(base, "a"), filepath.Join(base, "other")
	mustRun(t, "init", a, "--actor", "north")
	mustRun(t, "init", other, "--actor", "stranger")
	mustRun(t, "append", other, "--type", "OBSERVATION", "--subject", "x", "--predicate", "y", "--value", "1")
	if out := mustRun(t, "merge", a, other); !strings.Contains(out, "quarantined") {
		t.Fatalf("merge: %s", out)
	}
	if out := mustRun(t, "quarantine", a); strings.Count(out, "does not trust") != 3 {
		t.Fatalf("list: %s", out)
	}
	// Trusting the key by hand (as `trust` will), then retry: they apply.
	keysA := filepath.Join(a, "identity", "keys.json")
	ka, _ := os.ReadFile(keysA)
	ko, _ := os.ReadFile(filepath.Join(other, "identity", "keys.json"))
	var ja, jo map[string]any
	json.Unmarshal(ka, &ja)
	json.Unmarshal(ko, &jo)
	ja["keys"] = append(ja["keys"].([]any), jo["keys"].([]any)[0])
	nk, _ := json.MarshalIndent(ja, "", "  ")
	os.WriteFile(keysA, append(nk, '\n'), 0o644)
	if out := mustRun(t, "quarantine", a, "retry"); !strings.Contains(out, "3 applied") {
		t.Fatalf("retry: %s", out)
	}
	if out := mustRun(t, "quarantine", a); !strings.Contains(out, "nothing held") {
		t.Fatalf("after retry: %s", out)
	}
	mustRun(t, "verify", a, "-q")
	// Drop.
	mustRun(t, "init", filepath.Join(base, "third"), "--actor", "t3")
	mustRun(t, "merge", a, filepath.Join(base, "third"))
	if out := mustRun(t, "quarantine", a, "drop", "--all"); !strings.Contains(out, "dropped 2") {
		t.Fatalf("drop: %s", out)
	}
}

// TestJoinAndTrust: a second device joins, works offline, is quarantined
// on the first until trusted, then both converge, keys.json included.
func TestJoinAndTrust(t *testing.T) {
	base := isolate(t)
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	mustRun(t, "init", a, "--actor", "base_camp")
	if out := mustRun(t, "join", a, b, "--actor", "field_tablet"); !strings.Contains(out, "fingerprint") {
		t.Fatalf("join: %s", out)
	}
	mustRun(t, "verify", b, "-q")
	mustRun(t, "append", b, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", "5")
	mustRun(t, "append", a, "--type", "OBSERVATION", "--subject", "well", "--predicate", "level", "--value", "4")
	if out := mustRun(t, "merge", a, b); !strings.Contains(out, "quarantined") {
		t.Fatalf("merge before trust: %s", out)
	}
	if out := mustRun(t, "trust", a, filepath.Join(b, "identity", "keys.json")); !strings.Contains(out, "1 applied") {
		t.Fatalf("trust: %s", out)
	}
	mustRun(t, "merge", b, a)
	mustRun(t, "merge", a, b)
	for _, f := range []string{"events/events.ndjson", "identity/keys.json"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between the devices:\n%s\n---\n%s", f, x, y)
		}
	}
	mustRun(t, "verify", a, "-q")
	mustRun(t, "verify", b, "-q")
	if out := mustRun(t, "quarantine", a); !strings.Contains(out, "nothing held") {
		t.Errorf("quarantine after trust: %s", out)
	}
}
