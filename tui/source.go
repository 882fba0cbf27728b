package tui

import (
	"context"

	"github.com/backpack-field/backpack/internal/status"
)

// Source is where the screen's data comes from. Every method may block on
// I/O, so the model calls them only inside tea.Cmds, never in Update.
// Implementations must be safe for concurrent use: a detail load, a sync
// request and a trust may run at once.
type Source interface {
	// Subscribe connects to the running agent and returns a channel of
	// its statuses, the first one at once. The channel is closed when
	// the agent goes away or the Source is closed; a slow reader misses
	// intermediate statuses, never the latest. It returns an error
	// wrapping status.ErrNoAgent when no agent answers.
	Subscribe() (<-chan *status.Status, error)
	// Offline builds the status from the backpack on disk, for when no
	// agent runs.
	Offline(ctx context.Context) (*status.Status, error)
	// Stamp is a cheap fingerprint of the backpack's files (the log, the
	// device's held events, the last agent's status file): when it has
	// not changed, Offline and Detail would return what they returned.
	Stamp() string
	// Detail loads what the status does not carry.
	Detail(ctx context.Context) (*Detail, error)
	// SyncNow asks the running agent for a pass now; an error wrapping
	// status.ErrNoAgent when none runs.
	SyncNow(ctx context.Context) error
	// Trust makes the untrusted key keyID (one a bundle carried) a
	// trusted key of the backpack, waiting a bounded time for the
	// backpack's lock (the model gives the whole call 90 seconds).
	Trust(ctx context.Context, keyID string) (*TrustResult, error)
	// Close ends every subscription.
	Close() error
}

// Detail is what the screen shows beyond the status, read from the
// backpack and the device's state directory.
type Detail struct {
	// Manifest says whether manifest.sig signs the current Merkle root:
	// "ok", "stale", "absent", "invalid", "unknown key", "unreadable".
	Manifest      string
	ManifestBy    string // the key id that signed manifest.sig
	Forks         []Fork
	Quarantine    []Held
	Pending       []Held
	Rejected      []RejectedFile // bundles refused as a whole
	Keys          []UntrustedKey
	Recent        []EventRow // the newest events of the log, oldest first
	RecentOf      int        // events in the log when Recent was read
	State         []StateRow // the reducer state, namespace by namespace
	StateTotal    int        // entries in the state (State may hold fewer)
	Contested     int        // contested beliefs
	Problems      []string   // parts that could not be read, with why
	EventCount    int        // what the backpack held when the detail was read
	StateHash     string
	ReducerFailed string // the reducer stopped on an event the reference raises on
}

// Fork is one point where an actor's history split.
type Fork struct {
	Kind       string // bplog.ForkSamePrev or bplog.ForkSameID
	Actor      string
	ForkPoint  string // the shared predecessor, or the shared event id
	DetectedAt string
	Sides      []ForkSide
}

// ForkSide is one of the competing events of a fork.
type ForkSide struct {
	EventID   string
	Source    string // the peer or bundle that brought it
	Type      string
	Timestamp string
	Summary   string // the payload, short
	Line      string // the full signed event; "" when it was not found
	Where     string // "log line 42" or "held as fork evidence"
}

// Held is an event held back from the log.
type Held struct {
	EventID string
	Actor   string
	KeyID   string
	Reason  string
	Source  string
	Line    string
}

// RejectedFile is a bundle refused as a whole and kept in the quarantine.
type RejectedFile struct {
	File   string
	Reason string
	At     string
}

// UntrustedKey is a key whose events wait in the quarantine.
type UntrustedKey struct {
	KeyID       string
	Fingerprint string
	Waiting     int
	// Seen: a bundle carried the public key, so it can be trusted from
	// here.
	Seen      bool
	Sources   []string
	FirstSeen string
	LastSeen  string
}

// EventRow is one event of the log.
type EventRow struct {
	Line      int // 1-based line of events.ndjson; 0 when unknown
	EventID   string
	Type      string
	Actor     string
	Timestamp string
	Namespace string
	Summary   string
	Raw       string // the signed event as stored
}

// StateRow is one entry of the reducer state.
type StateRow struct {
	Namespace string // canonical, local, contested, archived
	Key       string
	Summary   string
	Competing []string // contested: each value with its evidence
	Raw       string   // the entry's canonical JSON
}

// TrustResult says what trusting a key did.
type TrustResult struct {
	KeyID       string
	Fingerprint string
	EventID     string // the KEY_PROMOTION event
	Applied     int    // quarantined events that applied
	StillHeld   int    // events still in the quarantine
}
