package agent_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// signedEvent signs, with the key in keyFile, an OBSERVATION by the
// key's actor whose predecessor is the actor's last event in d's log, or
// with fork set the one before it (a fork).
func signedEvent(t *testing.T, d *device, keyFile string, fork bool) []byte {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := bplog.ParseKeyFile(data)
	if err != nil {
		t.Fatal(err)
	}
	key := kf.Keys[0]
	log, err := os.ReadFile(filepath.Join(d.dir, "events", "events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, l := range bytes.Split(log, []byte("\n")) {
		if e, err := bplog.Parse(l); err == nil && e.Actor == kf.Actor {
			chain = append(chain, e.ID)
		}
	}
	prev := canon.NullValue()
	switch {
	case fork && len(chain) >= 2:
		prev = canon.StringValue(chain[len(chain)-2])
	case !fork && len(chain) >= 1:
		prev = canon.StringValue(chain[len(chain)-1])
	default:
		t.Fatalf("actor %s has %d events", kf.Actor, len(chain))
	}
	var payload canon.ObjectBuilder
	payload.Set("subject", canon.StringValue("external")).Set("predicate", canon.StringValue("note")).
		Set("value", canon.StringValue(time.Now().String())).Set("confidence", canon.FloatValue(1))
	var body canon.ObjectBuilder
	body.Set("type", canon.StringValue("OBSERVATION")).Set("actor", canon.StringValue(kf.Actor)).
		Set("prev_event_hash", prev).Set("timestamp_utc", canon.StringValue(pytime.FormatUTC(time.Now()))).
		Set("payload", payload.Value())
	_, line, err := key.Signer().Seal(body.Value())
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func appendLine(t *testing.T, d *device, line []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(d.dir, "events", "events.ndjson"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestExternalAppend: lines another program appends to events.ndjson
// while the agent runs are checked; good ones show up in the status, bad
// ones are reported.
func TestExternalAppend(t *testing.T) {
	base := shortTemp(t)
	a := newDevice(t, base, "a")
	p := filepath.Join(base, "p")
	os.MkdirAll(p, 0o755)
	a.must("init", a.dir, "--actor", "alpha")
	if s := a.status(); s.Agent.Running || s.Backpack.Events != 2 {
		t.Fatalf("status without agent: %+v", s)
	}
	r := a.startAgent(p)
	keys, _ := filepath.Glob(filepath.Join(base, "a", "c", "backpack", "keys", "*.json"))
	if len(keys) != 1 {
		t.Fatalf("keys: %v", keys)
	}
	g, err := store.ReadGenesis(a.dir)
	if err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(base, "a", "s", "backpack", g.UID+"-"+devHash(t, a.dir))
	conn, err := net.Dial("unix", agent.SocketPath(dev))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(`{"op":"subscribe"}` + "\n"))
	updates := make(chan int, 100)
	go func() {
		dec := json.NewDecoder(conn)
		for {
			var s status.Status
			if dec.Decode(&s) != nil {
				close(updates)
				return
			}
			updates <- s.Backpack.Events
		}
	}()
	appendLine(t, a, signedEvent(t, a, keys[0], false))
	waitFor(t, 60*time.Second, "the external event in the status", func() bool { return a.status().Backpack.Events == 3 })
	timeout := time.After(60 * time.Second)
	for n := 0; n != 3; {
		select {
		case n = <-updates:
		case <-timeout:
			t.Fatal("no subscribed status with the external event")
		}
	}

	appendLine(t, a, []byte(`{"this is": "not an event"}`))
	waitFor(t, 60*time.Second, "the bad line in the status", func() bool {
		for _, e := range a.status().Errors {
			if strings.Contains(e.Message, "appended by another program") {
				return true
			}
		}
		return false
	})
	r.stop(t, "a")
	if !strings.Contains(r.log.String(), "appended by another program") {
		t.Errorf("the log does not report the bad line:\n%s", r.log)
	}
}

// devHash is the 8 hex digits store.DeviceDir derives from a replica's
// absolute path.
func devHash(t *testing.T, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:4])
}

// TestTrustWhileAgentRuns: a key trusted with `backpack trust` while the
// agent runs releases the events that waited in the quarantine; the
// agent sees them appended by another program and takes them as valid
// (the key is now in keys.json), with no error.
func TestTrustWhileAgentRuns(t *testing.T) {
	base := shortTemp(t)
	a, b := newDevice(t, base, "a"), newDevice(t, base, "b")
	p := filepath.Join(base, "p")
	os.MkdirAll(p, 0o755)
	a.must("init", a.dir, "--actor", "alpha")
	bID := keyIDLine(b.must("join", a.dir, b.dir, "--actor", "bravo"))
	for i := range 3 {
		appendObs(b, "well_b", i)
	}
	ra, rb := a.startAgent(p), b.startAgent(p)
	waitFor(t, 60*time.Second, "b's events in a's quarantine", func() bool { return a.status().Held.Quarantine == 3 })
	a.must("trust", a.dir, bID)
	waitFor(t, 60*time.Second, "b's events applied on a", func() bool {
		s := a.status()
		return s.Held.Quarantine == 0 && s.Backpack.Events >= 2+1+3
	})
	// Let the agent look at what the command appended.
	a.must("status", a.dir)
	time.Sleep(500 * time.Millisecond)
	for _, e := range a.status().Errors {
		t.Errorf("a's agent reports: %s: %s", e.Where, e.Message)
	}
	ra.stop(t, "a")
	rb.stop(t, "b")
}
