package status

import (
	"encoding/json"
	"testing"
	"time"
)

// TestJSON pins the names and omissions of the status JSON, which
// `backpack status --json`, agent.sock and status.json share.
func TestJSON(t *testing.T) {
	at := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	full := Status{
		Backpack:   BackpackStatus{UID: "u", Dir: "/d", Events: 3, Actors: 2, StateHash: "s", MerkleRoot: "m"},
		Device:     DeviceStatus{KeyID: "k", Actor: "a"},
		Agent:      AgentStatus{Running: true, PID: 7, StartedAt: at, LastPass: at, Passes: 4, Waiting: "w", Progress: &ProgressStatus{Source: "b", Phase: "writing", Done: 1, Total: 2}},
		Folders:    []FolderStatus{{Path: "/p", Mode: "watching", FSType: "vfat", Reason: "r", LastScan: at, LastError: "e"}},
		Peers:      []PeerStatus{{KeyID: "k2", Actor: "a2", Folder: "/p", LastContact: "c", Trusted: true, TheyLack: 1, WeLack: 2, BundlesIn: 3, BundlesOut: 4, LastError: "e"}},
		Held:       HeldStatus{Forks: 1, Quarantine: 2, Pending: 3, Needs: []string{"n"}},
		Errors:     []ErrorEntry{{At: at, Where: "x", Message: "y"}},
		Throughput: Throughput{EventsIn: 1, EventsOut: 2, BundlesIn: 3, BundlesOut: 4, EventsInPerMin: 0.5, EventsOutPerMin: 1.5},
		Verdict:    "v",
	}
	for _, c := range []struct {
		name string
		st   Status
		want string
	}{
		{"full", full, `{"backpack":{"uid":"u","dir":"/d","events":3,"actors":2,"state_hash":"s","merkle_root":"m"},` +
			`"device":{"key_id":"k","actor":"a"},` +
			`"agent":{"running":true,"pid":7,"started_at":"2026-03-14T12:00:00Z","last_pass":"2026-03-14T12:00:00Z","passes":4,"waiting":"w","progress":{"source":"b","phase":"writing","done":1,"total":2}},` +
			`"folders":[{"path":"/p","watcher_mode":"watching","fs_type":"vfat","reason":"r","last_scan":"2026-03-14T12:00:00Z","last_error":"e"}],` +
			`"peers":[{"key_id":"k2","actor":"a2","folder":"/p","last_contact":"c","trusted":true,"they_lack":1,"we_lack":2,"bundles_in":3,"bundles_out":4,"last_error":"e"}],` +
			`"held":{"forks":1,"quarantine":2,"pending":3,"needs":["n"]},` +
			`"recent_errors":[{"at":"2026-03-14T12:00:00Z","where":"x","message":"y"}],` +
			`"throughput":{"events_in":1,"events_out":2,"bundles_in":3,"bundles_out":4,"events_in_per_min":0.5,"events_out_per_min":1.5},` +
			`"verdict":"v"}`},
		{"empty", Status{}, `{"backpack":{"uid":"","dir":"","events":0,"actors":0,"state_hash":"","merkle_root":""},` +
			`"device":{"key_id":"","actor":""},"agent":{"running":false,"passes":0},"folders":null,"peers":null,` +
			`"held":{"forks":0,"quarantine":0,"pending":0},"recent_errors":null,` +
			`"throughput":{"events_in":0,"events_out":0,"bundles_in":0,"bundles_out":0,"events_in_per_min":0,"events_out_per_min":0},"verdict":""}`},
	} {
		got, err := json.Marshal(c.st)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		var back Status
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if again, _ := json.Marshal(back); string(again) != string(got) {
			t.Errorf("%s: round trip changed it:\n%s", c.name, again)
		}
	}
}
