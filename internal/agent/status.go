package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
)

// maxErrors bounds Status.Errors.
const maxErrors = 20

// fillBackpack fills the backpack, device and held sections from an open
// backpack.
func fillBackpack(s *status.Status, b *store.Backpack) error {
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
	s.Device = status.DeviceStatus{KeyID: b.KeyID(), Actor: b.Actor()}
	forks, err := b.ForkRecords()
	if err != nil {
		return err
	}
	s.Held = status.HeldStatus{Forks: len(forks)}
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
func verdict(s *status.Status) string {
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
func OfflineStatus(ctx context.Context, dir, keyFile string) (*status.Status, error) {
	b, err := store.Open(ctx, dir, store.Options{ReadOnly: true, KeyFile: keyFile})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return offlineStatusOf(b)
}
