package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/backpack-field/backpack/internal/store"
)

// Status is what the agent reports: served on agent.sock, written to
// agent/status.json after every pass, printed by `backpack status`.
type Status struct {
	Backpack   BackpackStatus `json:"backpack"`
	Device     DeviceStatus   `json:"device"`
	Agent      AgentStatus    `json:"agent"`
	Folders    []FolderStatus `json:"folders"`
	Peers      []PeerStatus   `json:"peers"`
	Held       HeldStatus     `json:"held"`
	Errors     []ErrorEntry   `json:"recent_errors"`
	Throughput Throughput     `json:"throughput"`
	Verdict    string         `json:"verdict"`
}

// BackpackStatus describes the replica.
type BackpackStatus struct {
	UID        string `json:"uid"`
	Dir        string `json:"dir"`
	Events     int    `json:"events"`
	Actors     int    `json:"actors"`
	StateHash  string `json:"state_hash"`
	MerkleRoot string `json:"merkle_root"`
}

// DeviceStatus names this device.
type DeviceStatus struct {
	KeyID string `json:"key_id"`
	Actor string `json:"actor"`
}

// AgentStatus says whether an agent runs, and what it is doing.
type AgentStatus struct {
	Running   bool      `json:"running"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	LastPass  time.Time `json:"last_pass,omitzero"`
	Passes    int64     `json:"passes"`
	Waiting   string    `json:"waiting,omitempty"` // "waiting for the backpack lock"
	// Progress is a long import in flight (nil when none).
	Progress *ProgressStatus `json:"progress,omitempty"`
}

// ProgressStatus is how far a long import got.
type ProgressStatus struct {
	Source string `json:"source"`
	Phase  string `json:"phase"` // "checking", then "writing"
	Done   int    `json:"done"`
	Total  int    `json:"total"`
}

// FolderStatus is one peer folder.
type FolderStatus struct {
	Path      string    `json:"path"`
	Mode      string    `json:"watcher_mode"`
	FSType    string    `json:"fs_type,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	LastScan  time.Time `json:"last_scan,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// PeerStatus is one other device heard from in a peer folder.
type PeerStatus struct {
	KeyID       string `json:"key_id"`
	Actor       string `json:"actor"`
	Folder      string `json:"folder"`
	LastContact string `json:"last_contact,omitempty"` // their frontier's updated_at_utc
	Trusted     bool   `json:"trusted"`
	TheyLack    int    `json:"they_lack"`
	WeLack      int64  `json:"we_lack"`
	BundlesIn   int    `json:"bundles_in"`  // bundles imported from it (ledger lifetime)
	BundlesOut  int    `json:"bundles_out"` // bundles we wrote into its folder (ledger lifetime)
	LastError   string `json:"last_error,omitempty"`
}

// HeldStatus counts events held back from the log.
type HeldStatus struct {
	Forks      int      `json:"forks"`
	Quarantine int      `json:"quarantine"`
	Pending    int      `json:"pending"`
	Needs      []string `json:"needs,omitempty"` // "actor A: need events after evt_… (n events waiting)"
}

// ErrorEntry is one recent problem.
type ErrorEntry struct {
	At      time.Time `json:"at"`
	Where   string    `json:"where"`
	Message string    `json:"message"`
}

// Throughput counts what moved since the agent started.
type Throughput struct {
	EventsIn        int64   `json:"events_in"`
	EventsOut       int64   `json:"events_out"`
	BundlesIn       int64   `json:"bundles_in"`
	BundlesOut      int64   `json:"bundles_out"`
	EventsInPerMin  float64 `json:"events_in_per_min"`  // over the last 5 minutes
	EventsOutPerMin float64 `json:"events_out_per_min"` // over the last 5 minutes
}

// maxErrors bounds Status.Errors.
const maxErrors = 20

// fillBackpack fills the backpack, device and held sections from an open
// backpack.
func fillBackpack(s *Status, b *store.Backpack) error {
	snap := b.Snapshot()
	s.Backpack.UID = b.UID()
	s.Backpack.Dir = b.Dir()
	s.Backpack.Events = snap.EventCount
	s.Backpack.Actors = len(snap.Heads)
	s.Backpack.MerkleRoot = snap.MerkleRoot
	h, err := b.StateHash()
	if err != nil {
		return err
	}
	s.Backpack.StateHash = h
	s.Device = DeviceStatus{KeyID: b.KeyID(), Actor: b.Actor()}
	forks, err := b.ForkRecords()
	if err != nil {
		return err
	}
	s.Held = HeldStatus{Forks: len(forks)}
	q, err := b.Held("quarantine")
	if err != nil {
		return err
	}
	s.Held.Quarantine = len(q)
	p, err := b.Held("pending")
	if err != nil {
		return err
	}
	s.Held.Pending = len(p)
	s.Held.Needs = needs(b, p)
	return nil
}

// needs says, per actor with pending events, what it waits for.
func needs(b *store.Backpack, pending []store.HeldEvent) []string {
	heads := b.Snapshot().Heads
	n := map[string]int{}
	for _, p := range pending {
		n[p.Actor]++
	}
	var out []string
	for _, a := range sortedKeys(n) {
		out = append(out, store.Need{After: heads[a].ID, Pending: n[a]}.String(a))
	}
	return out
}

// verdict is the one-line summary.
func verdict(s *Status) string {
	var parts []string
	if len(s.Peers) == 0 {
		parts = append(parts, "no peer heard from yet")
	} else {
		in := 0
		for _, p := range s.Peers {
			if p.TheyLack == 0 && p.WeLack == 0 && p.LastError == "" {
				in++
			}
		}
		parts = append(parts, fmt.Sprintf("in sync with %d of %d peers", in, len(s.Peers)))
	}
	if s.Held.Forks > 0 {
		parts = append(parts, plural(s.Held.Forks, "fork"))
	}
	if s.Held.Quarantine > 0 {
		parts = append(parts, plural(s.Held.Quarantine, "event")+" in quarantine")
	}
	if s.Held.Pending > 0 {
		parts = append(parts, plural(s.Held.Pending, "event")+" pending")
	}
	if s.Agent.Waiting != "" {
		parts = append(parts, s.Agent.Waiting)
	}
	if !s.Agent.Running {
		parts = append(parts, "no agent running")
	}
	return strings.Join(parts, "; ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// StatusPath returns agent/status.json in a device directory.
func StatusPath(deviceDir string) string { return filepath.Join(deviceDir, "agent", "status.json") }

// SocketPath returns agent/agent.sock in a device directory.
func SocketPath(deviceDir string) string { return filepath.Join(deviceDir, "agent", "agent.sock") }

// OfflineStatus builds the status of the backpack in dir without an agent:
// the backpack read fresh (read-only open), folders and peers as the last
// agent left them in status.json, agent.running false.
func OfflineStatus(ctx context.Context, dir, keyFile string) (*Status, error) {
	b, err := store.Open(ctx, dir, store.Options{ReadOnly: true, KeyFile: keyFile})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	s := &Status{}
	dev, err := store.DeviceDir(b.UID(), dir)
	if err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(StatusPath(dev)); err == nil {
		json.Unmarshal(data, s) // a damaged file only loses the last agent's view
	}
	if err := fillBackpack(s, b); err != nil {
		return nil, err
	}
	s.Agent.Running = false
	s.Agent.PID = 0
	s.Agent.Waiting = ""
	s.Verdict = verdict(s)
	return s, nil
}
