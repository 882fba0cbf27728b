package tui

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/status"
	bplog "github.com/backpack-field/backpack/log"
)

// t0 is the fixed "now" of the fixtures.
var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// fakeSource serves fixed values. With live set, Subscribe hands out a
// channel that already holds the status; otherwise it says no agent runs.
type fakeSource struct {
	mu      sync.Mutex // guards the fields below
	live    bool
	status  *status.Status
	detail  *Detail
	stamp   string
	chans   []chan *status.Status
	details int      // Detail calls
	syncs   int      // SyncNow calls
	trusted []string // Trust calls
	trustFn func(keyID string) (*TrustResult, error)
}

func (f *fakeSource) Subscribe() (<-chan *status.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live {
		return nil, fmt.Errorf("%w: fixture", status.ErrNoAgent)
	}
	ch := make(chan *status.Status, 1)
	ch <- f.status
	f.chans = append(f.chans, ch)
	return ch, nil
}

func (f *fakeSource) Offline(context.Context) (*status.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := *f.status
	s.Agent = status.AgentStatus{LastPass: s.Agent.LastPass}
	return &s, nil
}

func (f *fakeSource) Stamp() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stamp
}

func (f *fakeSource) Detail(context.Context) (*Detail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.details++
	return f.detail, nil
}

func (f *fakeSource) SyncNow(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live {
		return status.ErrNoAgent
	}
	f.syncs++
	return nil
}

func (f *fakeSource) Trust(_ context.Context, keyID string) (*TrustResult, error) {
	f.mu.Lock()
	f.trusted = append(f.trusted, keyID)
	fn := f.trustFn
	f.mu.Unlock()
	if fn != nil {
		return fn(keyID)
	}
	return &TrustResult{KeyID: keyID, Fingerprint: fingerprint(keyID), EventID: fakeID("promotion"), Applied: 3}, nil
}

func (f *fakeSource) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.chans {
		close(ch)
	}
	f.chans = nil
	return nil
}

// fakeID is a stable event id for a label.
func fakeID(label string) string {
	sum := sha256.Sum256([]byte(label))
	return fmt.Sprintf("evt_%x", sum[:12])
}

// fieldKey is a fixed signing key, so that fixture events and their
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

// signed makes a real signed event line.
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

// beliefSummary is a belief payload in one line, as the agent's detail
// loader writes it: "subject:predicate = value (conf c)".
func beliefSummary(p canon.Value) string {
	enc := func(v canon.Value) string {
		b, err := canon.Encode(v)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	return p.Field("subject").Str() + ":" + p.Field("predicate").Str() + " = " + enc(p.Field("value")) + " (conf " + enc(p.Field("confidence")) + ")"
}

// inSyncStatus is a base camp whose agent runs and has heard from three
// devices, all in sync.
func inSyncStatus() *status.Status {
	return &status.Status{
		Backpack: status.BackpackStatus{UID: "5c1e7d2a-0b4f-4e55-9a61-2f7c3d8e9b10", Dir: "/srv/backpack/survey", Events: 12408, Actors: 4,
			StateHash: "8c41f0e2b9a7d3c6e5f4a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6", MerkleRoot: "3b2a19f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b"},
		Device: status.DeviceStatus{KeyID: "bp1_9b078ad4ec90906b", Actor: "base_camp"},
		Agent:  status.AgentStatus{Running: true, PID: 4242, StartedAt: t0.Add(-2*time.Hour - 13*time.Minute), LastPass: t0.Add(-3 * time.Second), Passes: 311},
		Folders: []status.FolderStatus{
			{Path: "/media/usb-stick/peers", Mode: "watching", FSType: "vfat", LastScan: t0.Add(-3 * time.Second)},
			{Path: "/mnt/office-share/backpack", Mode: "watching", FSType: "ext4", LastScan: t0.Add(-3 * time.Second)},
		},
		Peers: []status.PeerStatus{
			{KeyID: "bp1_1f2e3d4c5b6a7988", Actor: "north_camp", Folder: "/media/usb-stick/peers", LastContact: "2026-03-14T11:52:10.120000+00:00", Trusted: true, BundlesIn: 14, BundlesOut: 2},
			{KeyID: "bp1_a0b1c2d3e4f50617", Actor: "river_team", Folder: "/mnt/office-share/backpack", LastContact: "2026-03-14T11:58:41.500000+00:00", Trusted: true, BundlesIn: 9, BundlesOut: 1},
			{KeyID: "bp1_77aa88bb99cc00dd", Actor: "clinic_tablet", Folder: "/mnt/office-share/backpack", LastContact: "2026-03-14T09:15:00+00:00", Trusted: true, BundlesIn: 3, BundlesOut: 1},
		},
		Throughput: status.Throughput{EventsIn: 1840, EventsOut: 611, BundlesIn: 26, BundlesOut: 9, EventsInPerMin: 4.2, EventsOutPerMin: 1.5},
		Verdict:    "in sync with 3 of 3 peers",
	}
}

// fixtureDetail is what the backpack of inSyncStatus holds beyond the
// status: recent events and a state with contested beliefs.
func fixtureDetail(t testing.TB, st *status.Status) *Detail {
	t.Helper()
	d := &Detail{Manifest: "ok", ManifestBy: st.Device.KeyID, EventCount: st.Backpack.Events, StateHash: st.Backpack.StateHash, RecentOf: st.Backpack.Events}
	actors := []string{"base_camp", "north_camp", "river_team", "clinic_tablet"}
	words := []string{"working", "broken", "dry", "repaired"}
	prev := map[string]string{}
	for i := range 40 {
		a := actors[i%len(actors)]
		k := fieldKey(t, a)
		e, line := signed(t, k, a, prev[a], t0.Add(time.Duration(i-40)*37*time.Second), fmt.Sprintf("waterpoint_%04d", 7*i%23), "status", canon.StringValue(words[i%len(words)]))
		prev[a] = e.ID
		d.Recent = append(d.Recent, EventRow{Line: st.Backpack.Events - 39 + i, EventID: e.ID, Type: e.Type, Actor: a, Timestamp: e.Timestamp,
			Namespace: "local", Summary: beliefSummary(e.Value.Field("payload")), Raw: line})
	}
	for i := range 6 {
		key := fmt.Sprintf("waterpoint_%04d:status", i*3)
		d.State = append(d.State, StateRow{Namespace: "contested", Key: key,
			Summary:   `2 values: "broken" | "working"`,
			Competing: []string{`"broken": 2 evidence from north_camp, river_team`, `"working": 1 evidence from clinic_tablet`},
			Raw:       `{"canonical_value":null,"evidence_by_value":{"\"broken\"":[],"\"working\"":[]},"reason":"conflicting_evidence","status":"AWAITING_RESOLUTION","total_evidence_count":3}`})
	}
	for i := range 30 {
		key := fmt.Sprintf("waterpoint_%04d:level", i)
		d.State = append(d.State, StateRow{Namespace: "local", Key: key, Summary: fmt.Sprintf("%d by %s (conf 0.9)", 10+i*3, actors[i%4]),
			Raw: fmt.Sprintf(`{"actor":%q,"confidence":0.9,"value":%d}`, actors[i%4], 10+i*3)})
	}
	d.StateTotal, d.Contested = len(d.State)+2150, 6
	return d
}

// behindStatus: river_team has events we lack, and lacks some of ours.
func behindStatus() *status.Status {
	s := inSyncStatus()
	s.Peers[1].WeLack, s.Peers[1].TheyLack = 240, 3
	s.Peers[2].LastError = "read frontier.json: unexpected end of JSON input"
	s.Verdict = "in sync with 1 of 3 peers"
	return s
}

// forkStatus and forkDetail: north_camp's history split; one side came
// in a bundle from the USB stick, the other was already here.
func forkStatus() *status.Status {
	s := inSyncStatus()
	s.Held.Forks = 1
	s.Verdict = "in sync with 3 of 3 peers; 1 fork"
	return s
}

func forkDetail(t testing.TB, st *status.Status) *Detail {
	d := fixtureDetail(t, st)
	k := fieldKey(t, "north_camp")
	base, _ := signed(t, k, "north_camp", "", t0.Add(-3*time.Hour), "well_12", "level", canon.IntValue(40))
	a, la := signed(t, k, "north_camp", base.ID, t0.Add(-2*time.Hour), "well_12", "level", canon.IntValue(38))
	b, lb := signed(t, k, "north_camp", base.ID, t0.Add(-2*time.Hour+17*time.Minute), "well_12", "level", canon.IntValue(12))
	d.Forks = []Fork{{Kind: bplog.ForkSamePrev, Actor: "north_camp", ForkPoint: base.ID, DetectedAt: "2026-03-14T11:52:11.004000+00:00",
		Sides: []ForkSide{
			{EventID: a.ID, Source: "this replica (held before the fork was seen)", Type: a.Type, Timestamp: a.Timestamp, Summary: beliefSummary(a.Value.Field("payload")), Line: la, Where: "log line 12001"},
			{EventID: b.ID, Source: "bundle 000014 from bp1_1f2e3d4c5b6a7988", Type: b.Type, Timestamp: b.Timestamp, Summary: beliefSummary(b.Value.Field("payload")), Line: lb, Where: "log line 12377"},
		}}}
	return d
}

// quarantineStatus and quarantineDetail: a new device's events wait for
// its key to be trusted, and river_team's events wait for a gap.
func quarantineStatus() *status.Status {
	s := inSyncStatus()
	s.Peers = append(s.Peers, status.PeerStatus{KeyID: "bp1_5e5e6f6f70708181", Actor: "new_tablet", Folder: "/media/usb-stick/peers", LastContact: "2026-03-14T11:40:00+00:00", Trusted: false, BundlesIn: 1})
	s.Held.Quarantine, s.Held.Pending = 5, 2
	s.Held.Needs = []string{"actor river_team: need events after " + fakeID("river 1801") + " (2 events waiting)"}
	s.Verdict = "in sync with 3 of 4 peers; 5 events in quarantine; 2 events pending"
	return s
}

func quarantineDetail(t testing.TB, st *status.Status) *Detail {
	d := fixtureDetail(t, st)
	k := fieldKey(t, "new_tablet")
	id := keyIDOf(k)
	d.Keys = []UntrustedKey{{KeyID: id, Fingerprint: fingerprint(id), Waiting: 4, Seen: true,
		Sources: []string{"bundle 000001 from " + id}, FirstSeen: "2026-03-14T11:40:02.200000+00:00", LastSeen: "2026-03-14T11:40:02.200000+00:00"}}
	prev := ""
	for i := range 4 {
		e, line := signed(t, k, "new_tablet", prev, t0.Add(time.Duration(i-30)*time.Minute), "clinic_3", "queue_length", canon.IntValue(int64(5+i)))
		prev = e.ID
		d.Quarantine = append(d.Quarantine, Held{EventID: e.ID, Actor: "new_tablet", KeyID: id, Reason: "signed by key " + id + ", which identity/keys.json does not list",
			Source: "bundle 000001 from " + id, Line: line})
	}
	d.Quarantine = append(d.Quarantine, Held{Actor: "", Reason: "not an event: line is not a JSON object", Source: "bundle 000009 from bp1_a0b1c2d3e4f50617", Line: "[1,2,3]"})
	rk := fieldKey(t, "river_team")
	for i := range 2 {
		e, line := signed(t, rk, "river_team", fakeID(fmt.Sprint("river gap ", i)), t0.Add(time.Duration(i-10)*time.Minute), "ford_2", "depth_cm", canon.IntValue(int64(80+i)))
		d.Pending = append(d.Pending, Held{EventID: e.ID, Actor: "river_team", KeyID: keyIDOf(rk), Reason: "predecessor not held yet", Source: "bundle 000011 from bp1_a0b1c2d3e4f50617", Line: line})
	}
	d.Rejected = []RejectedFile{{File: "/media/usb-stick/peers/backpack-5c1e/bp1_0000111122223333/bundles/000002-1a2b.bundle", Reason: "bundles: signature does not verify with the sender's key", At: "2026-03-14T10:02:03+00:00"}}
	return d
}

// pollingStatus: the office share is a network filesystem the agent
// polls; the stick is on a FUSE mount whose watch failed.
func pollingStatus() *status.Status {
	s := inSyncStatus()
	s.Folders[1].Mode, s.Folders[1].FSType = "polling", "nfs4"
	s.Folders[1].Reason = "nfs4: inotify cannot see other machines' writes; polling every 2s"
	s.Folders[0].Mode, s.Folders[0].FSType = "degraded", "fuse.sshfs"
	s.Folders[0].Reason = "inotify watch failed; polling every 2s"
	s.Folders[0].LastError = "inotify_add_watch: no space left on device"
	s.Errors = []status.ErrorEntry{{At: t0.Add(-4 * time.Minute), Where: "watcher /media/usb-stick/peers", Message: "inotify_add_watch: no space left on device"}}
	return s
}
