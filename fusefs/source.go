package fusefs

import (
	"context"
	"errors"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

// A Source is the backpack a mount shows and the way its writes reach
// the backpack. fusefs never opens a backpack itself: internal/agent
// implements Source over the store.
//
// The server calls Load from the one goroutine that builds views, and the
// write methods one at a time (it serializes writes through the mount),
// possibly while a Load runs. A write method returns after the write is
// in the backpack; the server then loads a new view so that the writer
// reads its write. Errors that wrap ErrRefused fail the write with
// EINVAL, ErrBusy with EBUSY, ErrDenied with EACCES; os.ErrNotExist,
// context errors and others map as errno says.
type Source interface {
	// Load calls fn with the backpack as it is now. The Snapshot, and
	// the reducer state in it, may be used only until fn returns. An
	// error from fn is returned.
	Load(ctx context.Context, fn func(*Snapshot) error) error
	// AppendLines checks complete signed event lines (each without its
	// line break) and appends them. Every line must be an event the
	// backpack can apply now; if one cannot, none is applied and the
	// error wraps ErrRefused. Events already held are accepted again
	// without effect.
	AppendLines(ctx context.Context, lines [][]byte) error
	// Record signs body (an event body: type, payload and optionally
	// namespace) with the device key, appends it and returns its id.
	Record(ctx context.Context, body canon.Value) (eventID string, err error)
	// ImportBundle imports the bundle file at path (which the caller
	// removes afterwards) and returns what the import did, as the JSON
	// that inbox/NAME.result shows.
	ImportBundle(ctx context.Context, path string) (result []byte, err error)
}

// Snapshot is one state of the backpack, as a Source hands it to the
// view builder.
type Snapshot struct {
	UID        string
	Events     int    // events the reducer counted
	LogSize    int64  // bytes of events/events.ndjson the state covers
	MerkleRoot string // merkle_root.txt as the state left it
	// State is the reducer state of the first LogSize bytes of the log.
	// The builder only reads it (Entry, Entries, Len, ExportJSON), and
	// only while Load's fn runs. A Source may hand the same State again,
	// updated in place, in later Loads.
	State *reducer.State
	// Held events of the device: the quarantine, the pending events, and
	// competing events of forks kept aside.
	Quarantine, Pending, ForkHeld []Held
	// ForkRecords are the device's records of the forks it learned of.
	ForkRecords []ForkRecord
	// Status is status.json's new content; nil keeps what the mount
	// shows (see Server.SetStatus).
	Status []byte
}

// Held is one event held back from the log.
type Held struct {
	EventID string // "" for a line without one
	Line    string // the line as received
	JSON    []byte // what the mount shows for it (quarantine/, pending/)
}

// ForkRecord is the device's record of one fork.
type ForkRecord struct {
	Actor, ForkPoint string
	EventIDs         []string // the competing events
	JSON             []byte   // record.json
}

// Errors a Source wraps so that the mount fails a write with the right
// errno (see Source).
var (
	// ErrRefused: the input was refused (EINVAL); nothing changed.
	ErrRefused = errors.New("fusefs: refused")
	// ErrBusy: the backpack stayed locked by another writer (EBUSY).
	ErrBusy = errors.New("fusefs: the backpack stayed locked by another process")
	// ErrDenied: the write needs what this device lacks, such as a
	// signing key (EACCES).
	ErrDenied = errors.New("fusefs: not allowed")
)
