// Package status holds the values that describe a backpack and its sync
// agent: what the agent serves on its socket (ops "status" and
// "subscribe"), writes to agent/status.json after every pass, and what
// `backpack status` prints. They are plain values with their JSON form
// (docs/FORMAT.md, "Status socket"), so that the agent, the command line
// and the terminal screen share them without importing one another.
// The package imports no other backpack package.
package status

import (
	"errors"
	"time"
)

// ErrNoAgent is returned when no agent answers on a backpack's socket.
var ErrNoAgent = errors.New("agent: no agent running")

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
	// Radio is the LoRa link, when the agent runs one (nil otherwise).
	Radio   *RadioStatus `json:"radio,omitempty"`
	Verdict string       `json:"verdict"`
}

// RadioStatus is the agent's LoRa link.
type RadioStatus struct {
	Link          string        `json:"link"`   // "up", "connecting", "down: why"
	Device        string        `json:"device"` // the serial port
	Driver        string        `json:"driver"` // "rnode" or "kiss"
	Region        string        `json:"region"`
	AirtimeUsed   float64       `json:"airtime_used_s"`   // in the current duty-cycle window
	AirtimeBudget float64       `json:"airtime_budget_s"` // allowed in the window (0: no duty cycle)
	Window        time.Duration `json:"window_ns"`
	FramesSent    int64         `json:"frames_sent"`
	FramesRecv    int64         `json:"frames_received"`
	FramesLost    int64         `json:"frames_lost"`
	HasSignal     bool          `json:"has_signal"`
	RSSI          float64       `json:"rssi_dbm"`     // last frame
	SNR           float64       `json:"snr_db"`       // last frame
	Queue         int           `json:"queue_frames"` // frames waiting for airtime
	QueueETA      time.Duration `json:"queue_eta_ns"`
	EventsIn      int64         `json:"events_in"`
	Peers         []RadioPeer   `json:"peers,omitempty"`
}

// RadioPeer is a device heard over the radio.
type RadioPeer struct {
	KeyID     string    `json:"key_id"`
	LastHeard time.Time `json:"last_heard,omitzero"`
	InSync    bool      `json:"in_sync"`
	ToSend    int       `json:"to_send"` // events planned or in flight to it
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
	Folder      string `json:"folder"`                 // the peer folder, or for a radio peer "radio " + the serial device
	Medium      string `json:"medium,omitempty"`       // "radio" for a device heard over the radio; empty: a peer folder
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
