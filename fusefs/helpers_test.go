package fusefs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// isolate points key and device-state directories into the test's temp
// dir.
func isolate(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "state"))
	t.Setenv("BACKPACK_KEY", "")
	return base
}

func clock() func() time.Time {
	t := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(1500 * time.Microsecond)
		return t
	}
}

func body(typ, subject, predicate string, value canon.Value, conf float64) canon.Value {
	var p, b canon.ObjectBuilder
	p.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue(predicate)).Set("value", value)
	if conf >= 0 {
		p.Set("confidence", canon.FloatValue(conf))
	}
	b.Set("type", canon.StringValue(typ)).Set("payload", p.Value())
	return b.Value()
}

// fixture is a test backpack: its directory and its device key file.
type fixture struct {
	base, dir, key string
}

// newFixture makes a backpack whose private key lies inside it, in the
// reference's identity/private_keys.json (which the mount must hide), with
// canonical, local, contested and archived beliefs, awkward names, a fork
// and a quarantined event.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	key := filepath.Join(dir, store.PrivateKeysPath)
	ctx := context.Background()
	if _, err := store.Init(ctx, dir, store.InitOptions{KeyFile: key, Actor: "field_laptop", UID: "test-uid", Now: clock()}); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{base: base, dir: dir, key: key}
	long := strings.Repeat("very-long-subject-", 20)
	fx.append(t,
		body("OBSERVATION", "door_01", "status", canon.StringValue("open"), 0.9),
		body("OBSERVATION", "door_01", "status", canon.StringValue("closed"), 0.8),
		body("ATTESTATION", "door_02", "status", canon.StringValue("ok"), -1),
		body("ATTESTATION", "door_02", "status", canon.StringValue("broken"), -1),
		body("OBSERVATION", "path/with/slashes", ".hidden", canon.IntValue(7), 0.4),
		body("OBSERVATION", "urn:site:7", "flag", canon.BoolValue(true), 0.4),
		body("OBSERVATION", long, "temp", canon.FloatValue(21.5), 0.4),
	)
	// A replica with the same key writes after the same head: a fork.
	rep := filepath.Join(base, "replica")
	if err := os.CopyFS(rep, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	fx.appendIn(t, rep, body("OBSERVATION", "well_3", "level", canon.IntValue(4), 0.7))
	fx.append(t, body("OBSERVATION", "well_3", "level", canon.IntValue(5), 0.7))
	lines := logLines(t, rep)
	forked := lines[len(lines)-1]
	// A tampered line: rejected, kept in the quarantine.
	bad := bytes.Replace(forked, []byte(`"value":4`), []byte(`"value":40`), 1)
	fx.ingest(t, [][]byte{forked, bad})
	return fx
}

func (fx *fixture) append(t testing.TB, bodies ...canon.Value) {
	t.Helper()
	fx.appendIn(t, fx.dir, bodies...)
}

func (fx *fixture) appendIn(t testing.TB, dir string, bodies ...canon.Value) {
	t.Helper()
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: fx.key, Now: clock(), LockWait: 15 * time.Second}) // the mount takes the lock now and then, as a command would wait
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	for _, b := range bodies {
		if _, err := bp.Append(b); err != nil {
			t.Fatal(err)
		}
	}
}

func (fx *fixture) ingest(t testing.TB, lines [][]byte) *store.IngestResult {
	t.Helper()
	bp, err := store.Open(context.Background(), fx.dir, store.Options{KeyFile: fx.key, Now: clock(), LockWait: 15 * time.Second}) // the mount takes the lock now and then, as a command would wait
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	res, err := bp.Ingest(context.Background(), lines, "test")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// secrets returns the forms in which the private key could leak: its
// seed in base64 and hex, the whole key in base64, the raw seed bytes.
func (fx *fixture) secrets(t testing.TB) [][]byte {
	t.Helper()
	data, err := os.ReadFile(fx.key)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := bplog.ParseKeyFile(data)
	if err != nil || len(kf.Keys) == 0 {
		t.Fatalf("key file: %v", err)
	}
	seed := kf.Keys[0].Key.Seed()
	return [][]byte{
		[]byte(base64.StdEncoding.EncodeToString(seed)),
		[]byte(base64.RawURLEncoding.EncodeToString(seed)),
		[]byte(hex.EncodeToString(seed)),
		[]byte(base64.StdEncoding.EncodeToString(kf.Keys[0].Key)),
		seed,
	}
}

func logLines(t testing.TB, dir string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, store.EventsPath))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for l := range bytes.SplitSeq(data, []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}
