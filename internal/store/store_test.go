package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/backpack-field/backpack/merkle"
	"github.com/backpack-field/backpack/reducer"
)

// isolate points key and device-state directories into the test's temp
// dir.
func isolate(t *testing.T) string {
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

func newBackpack(t *testing.T) (string, *store.InitResult) {
	t.Helper()
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	res, err := store.Init(context.Background(), dir, store.InitOptions{Actor: "field_laptop", UID: "test-uid", Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	return dir, res
}

func observation(subject, predicate string, value canon.Value, conf float64) canon.Value {
	var p, b canon.ObjectBuilder
	p.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue(predicate)).Set("value", value).Set("confidence", canon.FloatValue(conf))
	b.Set("type", canon.StringValue("OBSERVATION")).Set("payload", p.Value())
	return b.Value()
}

// replayHash reduces the log from scratch with a fresh reducer.
func replayHash(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, store.EventsPath))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st := reducer.New()
	r := bplog.NewReader(f)
	for r.Next() {
		if v, err := bplog.ParseLine(r.Line().Text); err == nil {
			st.Apply(v)
		}
	}
	h, err := st.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustVerify(t *testing.T, dir string) *check.Report {
	t.Helper()
	rep, err := check.Run(context.Background(), dir, check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		for _, f := range rep.Findings {
			t.Log(f)
		}
		t.Fatalf("verify failed with %d failures", rep.Failures)
	}
	return rep
}

var policyHashes = map[string]string{
	"policies/safety_policy.json":                   "764691bb314bdf517ba8d28338f4d644492fb25076f5fe8139f4136ec5f5e5f9",
	"policies/retention_policy.json":                "e8639c2ce5d0d8b470ed8910fe03b35cb9ce30b458c8797706b9826027a760d6",
	"policies/ontology/perception_ontology_v1.json": "c3820794b9c88046943fbd007465112fa9f91f30f1e99f6bca8bab5c15d68283",
}

func TestInitLayout(t *testing.T) {
	dir, res := newBackpack(t)
	for p, want := range policyHashes {
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(data)); got != want {
			t.Errorf("%s: sha256 %s, want the reference bootstrap's %s", p, got, want)
		}
	}
	for _, d := range []string{"identity", "events", "state", "artifacts", "artifacts/cas", "policies"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("missing directory %s", d)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, store.PrivateKeysPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private key inside the backpack")
	}
	if rel, _ := filepath.Rel(dir, res.KeyFile); !strings.HasPrefix(rel, "..") {
		t.Errorf("key file %s inside the backpack", res.KeyFile)
	}
	if fi, err := os.Stat(res.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi, err)
	}
	rep := mustVerify(t, dir)
	if rep.Events != 2 || rep.IDRules["profile"] != 2 || rep.ManifestSig != "ok" {
		t.Errorf("report %+v", rep)
	}
	if _, err := store.Init(context.Background(), dir, store.InitOptions{}); err == nil {
		t.Errorf("init over a non-empty directory succeeded")
	}
}

func TestAppendIncrementalEqualsReplay(t *testing.T) {
	dir, _ := newBackpack(t)
	ctx := context.Background()
	b, err := store.Open(ctx, dir, store.Options{Now: clock(), CacheEvery: 7})
	if err != nil {
		t.Fatal(err)
	}
	vals := []canon.Value{canon.StringValue("open"), canon.StringValue("closed"), canon.IntValue(1), canon.FloatValue(1), canon.BoolValue(true)}
	for i := range 40 {
		body := observation(fmt.Sprintf("door_%02d", i%5), "status", vals[i%len(vals)], []float64{0.2, 0.6, 0.9}[i%3])
		if i%4 == 3 {
			body = body.With("actor", canon.StringValue("second_enumerator"))
		}
		ev, err := b.Append(body)
		if err != nil {
			t.Fatal(err)
		}
		if snap := b.Snapshot(); snap.Heads[ev.Actor].ID != ev.ID {
			t.Fatalf("head not updated")
		}
	}
	inc := stateHash(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if want := replayHash(t, dir); inc != want {
		t.Fatalf("incremental state %s, full replay %s", inc, want)
	}
	rep := mustVerify(t, dir)
	if rep.StateHash != inc || rep.StateCache != "ok" || len(rep.Actors) != 2 {
		t.Errorf("verify: state %s cache %s actors %v", rep.StateHash, rep.StateCache, rep.Actors)
	}
	// Reopen read-only: the cache is used and agrees.
	r, err := store.Open(ctx, dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := stateHash(t, r); got != inc {
		t.Errorf("reopened state %s, want %s", got, inc)
	}
	r.Close()
}

func TestStaleAndCorruptCache(t *testing.T) {
	dir, _ := newBackpack(t)
	ctx := context.Background()
	b, err := store.Open(ctx, dir, store.Options{Now: clock(), CacheEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := b.Append(observation("x", "y", canon.IntValue(int64(i)), 0.9)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	want := replayHash(t, dir)
	cache := filepath.Join(dir, store.CachePath)
	data, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	// A flipped byte in the cache body: detected by its checksum; open
	// replays and still gets the right state.
	bad := append([]byte(nil), data...)
	bad[len(bad)-3] ^= 0x20
	os.WriteFile(cache, bad, 0o644)
	r, err := store.Open(ctx, dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if stateHash(t, r) != want {
		t.Errorf("corrupt cache: state %s, want %s", stateHash(t, r), want)
	}
	r.Close()
	// A log rewritten underneath the cache (another tool reordered it):
	// the prefix no longer matches, open replays.
	os.WriteFile(cache, data, 0o644)
	logPath := filepath.Join(dir, store.EventsPath)
	lines := strings.SplitAfter(strings.TrimSuffix(mustRead(t, logPath), "\n"), "\n")
	lines[2], lines[3] = lines[3], lines[2]
	os.WriteFile(logPath, []byte(strings.Join(lines, "")+"\n"), 0o644)
	want = replayHash(t, dir)
	r, err = store.Open(ctx, dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if stateHash(t, r) != want {
		t.Errorf("rewritten log: state %s, want %s", stateHash(t, r), want)
	}
	r.Close()
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTornTailRepairedOnOpen(t *testing.T) {
	dir, _ := newBackpack(t)
	logPath := filepath.Join(dir, store.EventsPath)
	before := mustRead(t, logPath)
	f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"actor":"field_laptop","payl`)
	f.Close()
	b, err := store.Open(context.Background(), dir, store.Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, logPath); got != before {
		t.Fatalf("complete lines changed or tail kept:\n%q", got)
	}
	if _, err := b.Append(observation("a", "b", canon.IntValue(1), 0.5)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	qdir, _ := store.DeviceDir("test-uid", dir)
	ents, _ := os.ReadDir(filepath.Join(qdir, "quarantine"))
	if len(ents) != 1 {
		t.Fatalf("quarantine holds %d files", len(ents))
	}
	if q := mustRead(t, filepath.Join(qdir, "quarantine", ents[0].Name())); q != `{"actor":"field_laptop","payl` {
		t.Errorf("quarantined %q", q)
	}
	mustVerify(t, dir)
}

func TestSecondWriterRefused(t *testing.T) {
	dir, _ := newBackpack(t)
	b, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := store.Open(context.Background(), dir, store.Options{}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	r, err := store.Open(context.Background(), dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("reader while a writer holds the lock: %v", err)
	}
	r.Close()
}

func TestCrashBeforeManifestRebuilt(t *testing.T) {
	dir, _ := newBackpack(t)
	ctx := context.Background()
	old := mustRead(t, filepath.Join(dir, store.ManifestPath))
	oldRoot := mustRead(t, filepath.Join(dir, store.MerkleRootPath))
	b, _ := store.Open(ctx, dir, store.Options{Now: clock()})
	if _, err := b.Append(observation("a", "b", canon.IntValue(1), 0.5)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	// As if the process died after the log append, before the renames.
	os.WriteFile(filepath.Join(dir, store.ManifestPath), []byte(old), 0o644)
	os.WriteFile(filepath.Join(dir, store.MerkleRootPath), []byte(oldRoot), 0o644)
	// verify tells this case apart: the log still starts with what the
	// manifest describes, whole lines were appended after it.
	rep, _ := check.Run(ctx, dir, check.Options{})
	if !rep.OK || rep.Warnings < 1 || !strings.Contains(rep.Findings[0].Message, "appended after it") {
		t.Fatalf("after an interrupted append: ok %v %+v", rep.OK, rep.Findings)
	}
	// A change that is not an append is a failure.
	logPath := filepath.Join(dir, store.EventsPath)
	data := mustRead(t, logPath)
	os.WriteFile(logPath, []byte(strings.Replace(data, "initialized", "initialised", 1)), 0o644)
	if rep, _ := check.Run(ctx, dir, check.Options{}); rep.OK {
		t.Fatalf("edited log passed verify")
	}
	os.WriteFile(logPath, []byte(data), 0o644)
	b, err := store.Open(ctx, dir, store.Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if rep := mustVerify(t, dir); rep.Warnings != 0 {
		t.Fatalf("after the next writer: %+v", rep.Findings)
	}
}

func TestCheckpointResumeEqualsReplay(t *testing.T) {
	dir, _ := newBackpack(t)
	ctx := context.Background()
	b, _ := store.Open(ctx, dir, store.Options{Now: clock(), CacheEvery: 1 << 30})
	for i := range 12 {
		b.Append(observation("door", "status", canon.StringValue([]string{"open", "closed"}[i%2]), 0.8))
	}
	rel, err := b.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		b.Append(observation("door", "status", canon.StringValue([]string{"ajar", "open"}[i%2]), 0.9))
	}
	b.Close()
	if _, err := os.Stat(filepath.Join(dir, store.CachePath)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a small backpack should have no state cache: %v", err)
	}
	// The checkpoint is signed in the reference's way: Ed25519 over the
	// canonical bytes of everything but sig, by a key in keys.json.
	data := []byte(mustRead(t, filepath.Join(dir, rel)))
	cp, err := store.ParseCheckpoint(filepath.Base(rel), data)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := bplog.ParseRegistry([]byte(mustRead(t, filepath.Join(dir, store.KeysPath))))
	if err := cp.Verify(reg); err != nil || !cp.Lossless() || cp.EventCount != 14 {
		t.Fatalf("checkpoint %v lossless %v count %d", err, cp.Lossless(), cp.EventCount)
	}
	if v, err := canon.Parse(data); err != nil || string(canon.MustEncode(v)) != string(data) {
		t.Fatalf("checkpoint file is not canonical JSON without newline: %v", err)
	}
	var logged strings.Builder
	logger := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := store.Open(ctx, dir, store.Options{ReadOnly: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.Contains(logged.String(), "resumed from checkpoint") {
		t.Fatalf("did not resume from the checkpoint: %s", logged.String())
	}
	if got, want := stateHash(t, r), replayHash(t, dir); got != want {
		t.Fatalf("resumed from checkpoint: %s, full replay %s", got, want)
	}
	rep := mustVerify(t, dir)
	if len(rep.Checkpoints) != 1 {
		t.Errorf("checkpoints %v", rep.Checkpoints)
	}
	m, _ := merkle.ParseManifest([]byte(mustRead(t, filepath.Join(dir, store.ManifestPath))))
	found := false
	for _, e := range m.Files {
		found = found || e.Path == rel
	}
	if !found {
		t.Errorf("checkpoint not in the manifest (the reference leaves it a phantom; backpack must not)")
	}
}

func stateHash(t *testing.T, b *store.Backpack) string {
	t.Helper()
	h, err := b.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestReferencePrivateKeysFile: a vault whose key sits in
// identity/private_keys.json (as `provara init` leaves it) can be written
// without --key; the file stays out of the manifest.
func TestReferencePrivateKeysFile(t *testing.T) {
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	if _, err := store.Init(context.Background(), dir, store.InitOptions{KeyFile: filepath.Join(dir, store.PrivateKeysPath), Now: clock()}); err != nil {
		t.Fatal(err)
	}
	b, err := store.Open(context.Background(), dir, store.Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(observation("a", "b", canon.IntValue(1), 0.5)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	m, _ := merkle.ParseManifest([]byte(mustRead(t, filepath.Join(dir, store.ManifestPath))))
	for _, e := range m.Files {
		if e.Path == store.PrivateKeysPath {
			t.Fatal("private_keys.json listed in the manifest")
		}
	}
	mustVerify(t, dir)
	// Any other key file inside the backpack is refused.
	if _, err := store.Init(context.Background(), filepath.Join(base, "bp2"), store.InitOptions{KeyFile: filepath.Join(base, "bp2", "key.json")}); err == nil {
		t.Fatal("key file inside the backpack accepted")
	}
}

func TestFenceTokenVector(t *testing.T) {
	doc, err := canon.Parse(conformance.ReadFile(t, "extra_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	v := doc.Field("fencing_token")
	var k bplog.PrivateKey
	for _, tk := range doc.Field("test_keys").Elems() {
		if tk.Field("name").Str() == v.Field("key").Str() {
			k, _ = bplog.KeyFromSeedB64(tk.Field("private_key_b64").Str())
		}
	}
	got := store.MakeFenceToken(k.Key, k.ID, v.Field("latest_event_id").Str(), v.Field("timestamp").Str(), v.Field("nonce").Str())
	if string(got) != v.Field("token_json").Str() {
		t.Fatalf("token\n got %s\nwant %s", got, v.Field("token_json").Str())
	}
}

func TestFenceTokenStale(t *testing.T) {
	dir, _ := newBackpack(t)
	ctx := context.Background()
	b, err := store.Open(ctx, dir, store.Options{Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tok, err := b.FenceToken()
	if err != nil {
		t.Fatal(err)
	}
	if info, err := b.CheckFenceToken(tok); err != nil || !info.Fresh {
		t.Fatalf("fresh token: %+v %v", info, err)
	}
	bad := []byte(strings.Replace(string(tok), `"nonce":"`, `"nonce":"0`, 1))
	if _, err := b.CheckFenceToken(bad); !errors.Is(err, store.ErrBadToken) {
		t.Fatalf("tampered token: %v", err)
	}
	b.Append(observation("a", "b", canon.IntValue(1), 0.5))
	if _, err := b.CheckFenceToken(tok); !errors.Is(err, store.ErrStaleToken) {
		t.Fatalf("after an append: %v", err)
	}
}
