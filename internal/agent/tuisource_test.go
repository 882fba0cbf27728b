package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/reducer"
)

// stateHome gives the test its own, short XDG_STATE_HOME: device state
// and the agent's socket live there (socket paths must stay under 108
// bytes, and t.TempDir's are long).
func stateHome(t *testing.T) {
	t.Helper()
	d, err := os.MkdirTemp("", "bptui")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	t.Setenv("XDG_STATE_HOME", d)
	t.Setenv("BACKPACK_KEY", "")
}

// newBackpack makes a real backpack and returns its directory and key
// file.
func newBackpack(t *testing.T) (dir, keyFile string) {
	t.Helper()
	stateHome(t)
	base := t.TempDir()
	res, err := store.Init(context.Background(), filepath.Join(base, "bp"), store.InitOptions{Actor: "base_camp", KeyFile: filepath.Join(base, "device.json")})
	if err != nil {
		t.Fatal(err)
	}
	return res.Dir, res.KeyFile
}

// fieldKey is a fixed signing key, so that test events and their
// signatures are the same on every run.
func fieldKey(t testing.TB, label string) bplog.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte(label))
	k, err := bplog.KeyFromSeedB64(base64.StdEncoding.EncodeToString(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyIDOf(k bplog.PrivateKey) string { return bplog.KeyID(k.Key.Public().(ed25519.PublicKey)) }

// signed makes a real signed event line: an observation of subject's
// pred by actor after prev.
func signed(t testing.TB, k bplog.PrivateKey, actor, prev string, at time.Time, subject, pred string, value canon.Value) (*bplog.Event, string) {
	t.Helper()
	var p canon.ObjectBuilder
	p.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue(pred)).Set("value", value).Set("confidence", canon.FloatValue(0.9))
	var b canon.ObjectBuilder
	pv := canon.NullValue()
	if prev != "" {
		pv = canon.StringValue(prev)
	}
	b.Set("type", canon.StringValue("OBSERVATION")).Set("namespace", canon.StringValue("local")).Set("actor", canon.StringValue(actor)).
		Set("prev_event_hash", pv).Set("timestamp_utc", canon.StringValue(pytime.FormatUTC(at))).Set("payload", p.Value())
	e, line, err := k.Signer().Seal(b.Value())
	if err != nil {
		t.Fatal(err)
	}
	return e, string(line)
}

func deviceKey(t *testing.T, keyFile string) bplog.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := bplog.ParseKeyFile(data)
	if err != nil {
		t.Fatal(err)
	}
	return kf.Keys[0]
}

func withWriter(t *testing.T, dir, keyFile string, fn func(b *store.Backpack)) {
	t.Helper()
	b, err := openWriter(t.Context(), dir, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fn(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func observe(subject string, v int64) canon.Value {
	var p, b canon.ObjectBuilder
	p.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue("level")).Set("value", canon.IntValue(v)).Set("confidence", canon.FloatValue(0.9))
	b.Set("type", canon.StringValue("OBSERVATION")).Set("payload", p.Value())
	return b.Value()
}

// plantFork brings in, as from a bundle, two events of the device's
// actor after its current head.
func plantFork(t *testing.T, dir, keyFile string) (a, b *bplog.Event) {
	t.Helper()
	k := deviceKey(t, keyFile)
	var head string
	withWriter(t, dir, keyFile, func(bp *store.Backpack) {
		head = bp.Snapshot().Heads["base_camp"].ID
	})
	at := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	a, la := signed(t, k, "base_camp", head, at, "well_12", "level", canon.IntValue(38))
	b, lb := signed(t, k, "base_camp", head, at.Add(time.Minute), "well_12", "level", canon.IntValue(12))
	withWriter(t, dir, keyFile, func(bp *store.Backpack) {
		res, err := bp.Ingest(t.Context(), [][]byte{[]byte(la), []byte(lb)}, "bundle 000007 from bp1_feedfeedfeedfeed")
		if err != nil || len(res.Forks) != 1 {
			t.Fatalf("planting a fork: %v %+v", err, res)
		}
	})
	return a, b
}

func TestTUISourceDetailFork(t *testing.T) {
	dir, keyFile := newBackpack(t)
	a, b := plantFork(t, dir, keyFile)
	src, err := NewTUISource(dir, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d, err := src.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Problems) > 0 {
		t.Errorf("problems: %v", d.Problems)
	}
	if len(d.Forks) != 1 {
		t.Fatalf("%d forks", len(d.Forks))
	}
	f := d.Forks[0]
	if f.Actor != "base_camp" || f.Kind != bplog.ForkSamePrev || len(f.Sides) != 2 || f.DetectedAt == "" {
		t.Fatalf("fork %+v", f)
	}
	for _, want := range []*bplog.Event{a, b} {
		found := false
		for _, s := range f.Sides {
			if s.EventID != want.ID {
				continue
			}
			found = true
			e, err := bplog.Parse([]byte(s.Line))
			if err != nil || e.ID != want.ID || e.Sig != want.Sig {
				t.Errorf("side %s: line does not hold the signed event: %v", want.ID, err)
			}
			if !strings.HasPrefix(s.Where, "log line ") || !strings.Contains(s.Source, "bundle 000007") || !strings.Contains(s.Summary, "well_12:level") {
				t.Errorf("side %+v", s)
			}
		}
		if !found {
			t.Errorf("side %s missing", want.ID)
		}
	}
	// A second load comes from the cache and says the same.
	d2, err := src.Detail(t.Context())
	if err != nil || len(d2.Forks) != 1 || d2.Forks[0].Sides[0].Line != f.Sides[0].Line {
		t.Errorf("second load: %v %+v", err, d2.Forks)
	}
	// The status the screen gets offline counts the fork too.
	st, err := src.Offline(t.Context())
	if err != nil || st.Held.Forks != 1 || st.Agent.Running {
		t.Errorf("offline status: %v %+v", err, st)
	}
}

func TestTUISourceQuarantineAndTrust(t *testing.T) {
	dir, keyFile := newBackpack(t)
	stranger := fieldKey(t, "new_tablet")
	id := keyIDOf(stranger)
	var lines [][]byte
	prev := ""
	for i := range 3 {
		e, l := signed(t, stranger, "new_tablet", prev, time.Date(2026, 3, 14, 10, i, 0, 0, time.UTC), "clinic_3", "queue", canon.IntValue(int64(i)))
		prev = e.ID
		lines = append(lines, []byte(l))
	}
	withWriter(t, dir, keyFile, func(b *store.Backpack) {
		res, err := b.Ingest(t.Context(), lines, "bundle 000001 from "+id)
		if err != nil || len(res.Quarantined) != 3 {
			t.Fatalf("ingest: %v %+v", err, res)
		}
		if _, err := b.NoteSeenKeys([]store.SeenOffer{{Public: stranger.Public(), Sender: true}}, "bundle 000001 from "+id); err != nil {
			t.Fatal(err)
		}
	})
	src, err := NewTUISource(dir, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d, err := src.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Quarantine) != 3 || len(d.Keys) != 1 {
		t.Fatalf("quarantine %d keys %+v", len(d.Quarantine), d.Keys)
	}
	k := d.Keys[0]
	if k.KeyID != id || !k.Seen || k.Waiting != 3 || k.Fingerprint != store.Fingerprint(id) || len(k.Sources) != 1 {
		t.Fatalf("key %+v", k)
	}
	// Trust it through the source while another writer holds the lock
	// for a moment, as an agent's pass does.
	held, err := store.Open(t.Context(), dir, store.Options{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	release := time.AfterFunc(300*time.Millisecond, func() { held.Close() })
	defer release.Stop()
	res, err := src.Trust(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID != id || res.Applied != 3 || res.StillHeld != 0 || !strings.HasPrefix(res.EventID, "evt_") {
		t.Fatalf("trust result %+v", res)
	}
	d, err = src.Detail(t.Context())
	if err != nil || len(d.Quarantine) != 0 || len(d.Keys) != 0 {
		t.Fatalf("after trust: %v quarantine %d keys %d", err, len(d.Quarantine), len(d.Keys))
	}
	// Trusting it again, or a key never seen, says what to do.
	if _, err := src.Trust(t.Context(), id); err == nil || !strings.Contains(err.Error(), "already trusted") {
		t.Errorf("second trust: %v", err)
	}
	if _, err := src.Trust(t.Context(), "bp1_0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "backpack trust") {
		t.Errorf("unseen key: %v", err)
	}
}

func TestTUISourceRecentEventsAndState(t *testing.T) {
	stateHome(t)
	base := t.TempDir()
	res, err := gen.Backpack(t.Context(), filepath.Join(base, "bp"), base, gen.Options{Events: 4000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewTUISource(res.Dir, res.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d, err := src.Detail(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The recent events are the last lines of the log, numbered.
	data, err := os.ReadFile(filepath.Join(res.Dir, store.EventsPath))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) <= tailBytes {
		t.Fatalf("log of %d bytes does not exercise the tail cut", len(data))
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(d.Recent) != maxRecent {
		t.Fatalf("%d recent events", len(d.Recent))
	}
	for _, r := range d.Recent {
		if got := string(lines[r.Line-1]); got != r.Raw {
			t.Fatalf("recent line %d is not that line of the log", r.Line)
		}
	}
	if last := d.Recent[len(d.Recent)-1]; last.Line != len(lines) || last.EventID == "" || last.Summary == "" {
		t.Errorf("last recent event %+v of %d lines", last, len(lines))
	}
	// The state matches the reducer's, contested beliefs with their
	// competing values.
	b, err := store.Open(t.Context(), res.Dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.WithState(func(st *reducer.State) error {
		if d.Contested != st.Len(reducer.Contested) || d.StateTotal != st.Len(reducer.Contested)+st.Len(reducer.Canonical)+st.Len(reducer.Local)+st.Len(reducer.Archived) {
			t.Errorf("contested %d total %d", d.Contested, d.StateTotal)
		}
		return nil
	})
	if d.Contested == 0 {
		t.Fatal("the generated backpack has no contested belief")
	}
	c := d.State[0]
	if c.Namespace != "contested" || len(c.Competing) < 2 || !strings.Contains(c.Competing[0], "evidence from field_team_") {
		t.Errorf("first state row %+v", c)
	}
	if d.Manifest != "ok" || d.StateHash == "" {
		t.Errorf("manifest %q state hash %q", d.Manifest, d.StateHash)
	}
}

func TestTUIManifestStatus(t *testing.T) {
	dir, keyFile := newBackpack(t)
	src, err := NewTUISource(dir, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	check := func(want string) {
		t.Helper()
		d, err := src.Detail(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if d.Manifest != want {
			t.Errorf("manifest %q, want %q", d.Manifest, want)
		}
	}
	check("ok")
	sigPath := filepath.Join(dir, store.ManifestSigPath)
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		t.Fatal(err)
	}
	// A signature over an older root is stale.
	withWriter(t, dir, keyFile, func(b *store.Backpack) {
		if _, err := b.Append(observe("well_1", 3)); err != nil {
			t.Fatal(err)
		}
	})
	if err := os.WriteFile(sigPath, sig, 0o644); err != nil {
		t.Fatal(err)
	}
	check("stale")
	os.WriteFile(sigPath, bytes.Replace(sig, []byte(`"sig": "`), []byte(`"sig": "AAAA`), 1), 0o644)
	check("invalid")
	os.Remove(sigPath)
	check("absent")
}

// TestTUISourceSubscribe runs a real agent in this process and watches its
// status stream as events are appended and a sync is asked for.
func TestTUISourceSubscribe(t *testing.T) {
	dir, keyFile := newBackpack(t)
	src, err := NewTUISource(dir, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Subscribe(); !errors.Is(err, status.ErrNoAgent) {
		t.Fatalf("subscribe without an agent: %v", err)
	}
	if err := src.SyncNow(t.Context()); !errors.Is(err, status.ErrNoAgent) {
		t.Fatalf("sync without an agent: %v", err)
	}
	ag, err := New(Options{Dir: dir, Peers: []string{t.TempDir()}, KeyFile: keyFile, Interval: time.Hour, Settle: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	})
	defer stop()
	var ch <-chan *status.Status
	waitUntil(t, "the agent's socket", func() bool {
		ch, err = src.Subscribe()
		return err == nil
	})
	next := func(what string, ok func(*status.Status) bool) *status.Status {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case st, open := <-ch:
				if !open {
					t.Fatalf("subscription closed waiting for %s", what)
				}
				if ok(st) {
					return st
				}
			case <-deadline:
				t.Fatalf("no status with %s", what)
			}
		}
	}
	first := next("a pass", func(s *status.Status) bool { return s.Agent.Running && s.Agent.Passes > 0 })
	withWriter(t, dir, keyFile, func(b *store.Backpack) {
		if _, err := b.Append(observe("well_1", 5)); err != nil {
			t.Fatal(err)
		}
	})
	next("the appended event", func(s *status.Status) bool { return s.Backpack.Events == first.Backpack.Events+1 })
	before := ag.Status().Agent.Passes
	if err := src.SyncNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	next("the pass sync asked for", func(s *status.Status) bool { return s.Agent.Passes > before })
	// The agent stops: the channel closes.
	stop()
	for range ch {
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTUIReadLineBound(t *testing.T) {
	long := strings.Repeat("x", 100) + "\n" + "short\n"
	br := bufio.NewReaderSize(strings.NewReader(long), 16)
	if _, err := readLine(br, 50); err == nil {
		t.Error("a line over the bound was read")
	}
	br = bufio.NewReaderSize(strings.NewReader(long), 16)
	if l, err := readLine(br, 200); err != nil || len(l) != 100 {
		t.Errorf("line %d %v", len(l), err)
	}
	if l, err := readLine(br, 200); err != nil || string(l) != "short" {
		t.Errorf("second line %q %v", l, err)
	}
}

func TestTUIParseStatus(t *testing.T) {
	if _, err := parseStatus([]byte(`{"error":"unknown op \"x\""}`)); err == nil || !strings.Contains(err.Error(), "unknown op") {
		t.Errorf("agent error: %v", err)
	}
	if _, err := parseStatus([]byte(`{"backpack":`)); err == nil {
		t.Error("truncated status accepted")
	}
	st, err := parseStatus([]byte(`{"backpack":{"uid":"u","events":7},"held":{"forks":2},"verdict":"v"}`))
	if err != nil || st.Backpack.Events != 7 || st.Held.Forks != 2 || st.Verdict != "v" {
		t.Errorf("status %+v %v", st, err)
	}
}

func TestQuickID(t *testing.T) {
	for in, want := range map[string]string{
		`{"actor":"a","event_id":"evt_1","payload":{}}`:       "evt_1",
		`{"actor":"a", "event_id" : "evt_2"}`:                 "evt_2",
		`{"payload":{"event_id":"evt_x"},"event_id":"evt_3"}`: "",
		`{"event_id":"evt_\u0031"}`:                           "",
		`{"event_id":1}`:                                      "",
		`{"type":"x"}`:                                        "",
	} {
		got, sure := quickID([]byte(in))
		if got != want || sure != (want != "") {
			t.Errorf("quickID(%s) = %q %v, want %q", in, got, sure, want)
		}
	}
}
