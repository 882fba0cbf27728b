package check_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/check"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func isolate(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "state"))
	t.Setenv("BACKPACK_KEY", "")
	return base
}

// fixture makes a backpack with a few events and returns it and its key.
func fixture(t *testing.T) (string, bplog.PrivateKey) {
	t.Helper()
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Second); return now }
	res, err := store.Init(context.Background(), dir, store.InitOptions{Actor: "alpha", UID: "check-uid", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.Open(context.Background(), dir, store.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		var p, body canon.ObjectBuilder
		p.Set("subject", canon.StringValue("tank")).Set("predicate", canon.StringValue("level")).Set("value", canon.IntValue(int64(i*10)))
		body.Set("type", canon.StringValue("OBSERVATION")).Set("payload", p.Value())
		if _, err := b.Append(body.Value()); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	kf, err := bplog.ParseKeyFile([]byte(read(t, res.KeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	return dir, kf.Keys[0]
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func logLines(t *testing.T, dir string) []string {
	l := strings.SplitAfter(read(t, filepath.Join(dir, store.EventsPath)), "\n")
	return l[:len(l)-1]
}

func writeLines(t *testing.T, dir string, lines []string) {
	t.Helper()
	s := strings.Join(lines, "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, store.EventsPath), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// treeHash hashes every file under dir, to show verify writes nothing.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(h, "%s %x %v\n", p, sha256.Sum256(b), info.ModTime())
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

func run(t *testing.T, dir string) *check.Report {
	t.Helper()
	before := treeHash(t, dir)
	rep, err := check.Run(context.Background(), dir, check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if treeHash(t, dir) != before {
		t.Fatalf("verify changed files")
	}
	return rep
}

// want asserts a failure finding in area at line (0: any line).
func want(t *testing.T, rep *check.Report, area string, line int, contains string) {
	t.Helper()
	for _, f := range rep.Findings {
		if f.Severity == check.Fail && f.Area == area && (line == 0 || f.Line == line) && strings.Contains(f.Message, contains) {
			return
		}
	}
	for _, f := range rep.Findings {
		t.Log(f)
	}
	t.Fatalf("no %s failure at line %d containing %q", area, line, contains)
}

func sealLine(t *testing.T, k bplog.PrivateKey, body canon.Value) string {
	t.Helper()
	_, line, err := k.Signer().Seal(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(line) + "\n"
}

func TestCleanBackpack(t *testing.T) {
	dir, _ := fixture(t)
	rep := run(t, dir)
	if !rep.OK || rep.Events != 6 || rep.Signatures.Valid != 6 || rep.ManifestSig != "ok" {
		for _, f := range rep.Findings {
			t.Log(f)
		}
		t.Fatalf("clean backpack: %+v", rep)
	}
}

func TestBadInputReportedPrecisely(t *testing.T) {
	t.Run("corrupted signature byte", func(t *testing.T) {
		dir, _ := fixture(t)
		lines := logLines(t, dir)
		i := strings.Index(lines[3], `"sig":"`) + 10
		b := []byte(lines[3])
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		lines[3] = string(b)
		writeLines(t, dir, lines)
		rep := run(t, dir)
		want(t, rep, "signature", 4, "does not verify")
		want(t, rep, "manifest", 0, "sha256")
		if rep.OK || rep.Signatures.Invalid != 1 {
			t.Errorf("invalid %d", rep.Signatures.Invalid)
		}
	})
	t.Run("garbage line", func(t *testing.T) {
		dir, _ := fixture(t)
		lines := logLines(t, dir)
		lines = append(lines[:2], append([]string{"this is not an event\n"}, lines[2:]...)...)
		writeLines(t, dir, lines)
		rep := run(t, dir)
		want(t, rep, "log", 3, "unusable line")
		if rep.Signatures.Valid != 6 {
			t.Errorf("other events affected: %d valid", rep.Signatures.Valid)
		}
	})
	t.Run("broken chain", func(t *testing.T) {
		dir, k := fixture(t)
		lines := logLines(t, dir)
		v, _ := canon.Parse([]byte(lines[4]))
		v = v.With("prev_event_hash", canon.StringValue("evt_000000000000000000000000"))
		lines[4] = sealLine(t, k, v)
		writeLines(t, dir, lines[:5])
		rep := run(t, dir)
		want(t, rep, "chain", 5, "not in the log")
	})
	t.Run("fork", func(t *testing.T) {
		dir, k := fixture(t)
		lines := logLines(t, dir)
		v, _ := canon.Parse([]byte(lines[4]))
		v = v.With("payload", canon.StringValue("a competing event after the same predecessor"))
		lines = append(lines, sealLine(t, k, v))
		writeLines(t, dir, lines)
		rep := run(t, dir)
		want(t, rep, "fork", 7, "2 events follow")
		if len(rep.Forks) != 1 || rep.Forks[0].Actor != "alpha" {
			t.Errorf("forks %+v", rep.Forks)
		}
	})
	t.Run("truncated file", func(t *testing.T) {
		dir, _ := fixture(t)
		p := filepath.Join(dir, store.EventsPath)
		data := read(t, p)
		os.WriteFile(p, []byte(data[:len(data)-40]), 0o644)
		rep := run(t, dir)
		want(t, rep, "log", 6, "incomplete last line")
	})
	t.Run("wrong manifest entry", func(t *testing.T) {
		dir, _ := fixture(t)
		p := filepath.Join(dir, store.ManifestPath)
		m := read(t, p)
		i := strings.Index(m, `"path":"policies/safety_policy.json","sha256":"`) + len(`"path":"policies/safety_policy.json","sha256":"`)
		m = m[:i] + "0000" + m[i+4:]
		os.WriteFile(p, []byte(m), 0o644)
		rep := run(t, dir)
		want(t, rep, "manifest", 0, "policies/safety_policy.json")
	})
}

func TestReferenceBackpacks(t *testing.T) {
	exp, err := canon.Parse(conformance.ReadFile(t, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, sig := range map[string]string{"reference_backpack": "stale", "demo_backpack": "ok"} {
		t.Run(name, func(t *testing.T) {
			w := exp.Field(name)
			rep := run(t, conformance.Path(t, name))
			if rep.StateHash != w.Field("reducer_v0_state_hash").Str() {
				t.Errorf("state hash %s", rep.StateHash)
			}
			if rep.MerkleRoot != w.Field("merkle_root_from_stored_manifest").Str() {
				t.Errorf("merkle root %s", rep.MerkleRoot)
			}
			if n, _ := w.Field("signatures_valid").Int64(); int64(rep.Signatures.Valid) != n || rep.Signatures.Invalid != 0 {
				t.Errorf("signatures %+v", rep.Signatures)
			}
			if n, _ := w.Field("fork_count").Int64(); int64(len(rep.Forks)) != n {
				t.Errorf("forks %d", len(rep.Forks))
			}
			if rep.ManifestSig != sig {
				t.Errorf("manifest.sig %s, want %s", rep.ManifestSig, sig)
			}
			// The reference fixture's manifest.sig signs an older root: a
			// warning, or with Strict the only failure.
			if sig == "stale" {
				if !rep.OK || rep.Warnings != 1 {
					t.Errorf("default: ok %v warnings %d", rep.OK, rep.Warnings)
				}
				strict, err := check.Run(context.Background(), conformance.Path(t, name), check.Options{Strict: true})
				if err != nil {
					t.Fatal(err)
				}
				if strict.Failures != 1 || !strings.Contains(strict.Findings[len(strict.Findings)-1].Message, "711f35219b55375d") {
					for _, f := range strict.Findings {
						t.Log(f)
					}
					t.Errorf("strict failures %d", strict.Failures)
				}
			}
			if sig == "ok" && !rep.OK {
				for _, f := range rep.Findings {
					t.Log(f)
				}
				t.Errorf("demo backpack should verify")
			}
		})
	}
}

// TestRevokedKey: events signed by a key that keys.json marks revoked are
// accepted with a warning when they precede the revocation event, and
// fail after it (the reference rejects both; SPEC §2.3, D8).
func TestRevokedKey(t *testing.T) {
	dir, device := fixture(t)
	old, _ := bplog.KeyFromSeedB64("paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=")
	lines := logLines(t, dir)
	var head string
	{
		v, _ := canon.Parse([]byte(lines[len(lines)-1]))
		head = v.Field("event_id").Str()
	}
	body := func(typ, prev string) canon.Value {
		var b canon.ObjectBuilder
		p := canon.NullValue()
		if prev != "" {
			p = canon.StringValue(prev)
		}
		b.Set("type", canon.StringValue(typ)).Set("actor", canon.StringValue("old_device")).Set("prev_event_hash", p).
			Set("timestamp_utc", canon.StringValue("2026-05-02T00:00:00+00:00")).Set("payload", canon.ObjectValue())
		return b.Value()
	}
	before, l1, _ := old.Signer().Seal(body("OBSERVATION", ""))
	rev, l2, _ := device.Signer().Seal(body("KEY_REVOCATION", head).With("actor", canon.StringValue("alpha")))
	_, l3, _ := old.Signer().Seal(body("OBSERVATION", before.ID))
	lines = append(lines, string(l1)+"\n", string(l2)+"\n", string(l3)+"\n")
	writeLines(t, dir, lines)
	keys, _ := canon.Parse([]byte(read(t, filepath.Join(dir, store.KeysPath))))
	entry := bplog.KeyEntry(old.Public(), []string{"attestation"}, "2026-05-01T00:00:00+00:00").
		With("status", canon.StringValue("revoked")).With("revocation_event_id", canon.StringValue(rev.ID))
	keys = keys.With("keys", canon.ArrayValue(append(keys.Field("keys").Elems(), entry)...))
	os.WriteFile(filepath.Join(dir, store.KeysPath), canon.MustEncode(keys), 0o644)
	rep := run(t, dir)
	n := len(lines)
	found := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Area == "signature" {
			found[fmt.Sprintf("%s@%d", f.Severity, f.Line)] = true
		}
	}
	if !found[fmt.Sprintf("warn@%d", n-2)] || !found[fmt.Sprintf("fail@%d", n)] {
		for _, f := range rep.Findings {
			t.Log(f)
		}
		t.Fatalf("revoked key findings: %v", found)
	}
}
