package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/backpack-field/backpack/internal/store"
)

// LedgerVersion is the version of agent/ledger.json.
const LedgerVersion = 1

// Ledger is the agent's memory of peer folders (agent/ledger.json in the
// device directory): which bundles of other devices it imported and what
// came of them, and which bundles it exported. Losing it costs work, not
// correctness: every bundle is imported again (duplicates change nothing)
// and our bundles still present are read again for their event ids.
type Ledger struct {
	Version int                     `json:"version"`
	Folders map[string]*FolderState `json:"folders"` // by absolute peer folder path
}

// FolderState is the ledger of one peer folder.
type FolderState struct {
	// Seen: bundles of other devices, by "<device dir>/<file name>".
	Seen map[string]*SeenBundle `json:"seen"`
	// Exported: our bundles, oldest first.
	Exported []*ExportedBundle `json:"exported"`
	// NextSeq is the sequence number of our next bundle.
	NextSeq int64 `json:"next_seq"`
	// FrontierSeq is the seq of the last frontier.json we wrote, and
	// FrontierDigest the SHA-256 (hex) of the backpack frontier it held.
	FrontierSeq    int64  `json:"frontier_seq"`
	FrontierDigest string `json:"frontier_digest"`
	// BundlesIn counts, per device dir, the bundles imported from it;
	// BundlesOut the bundles we wrote into this folder (both since the
	// ledger began).
	BundlesIn  map[string]int `json:"bundles_in,omitempty"`
	BundlesOut int            `json:"bundles_out,omitempty"`
}

// SeenBundle is a bundle of another device and what importing it did. A
// bundle is the same bundle while its device dir, name, size and SHA-256
// are; ModTime only saves hashing an unchanged file again.
type SeenBundle struct {
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ModTime     time.Time `json:"mod_time"`
	ImportedAt  time.Time `json:"imported_at"`
	Applied     int       `json:"applied"`
	Duplicates  int       `json:"duplicates"`
	Pending     int       `json:"pending"`
	Quarantined int       `json:"quarantined"`
	Rejected    int       `json:"rejected"`
	Refused     string    `json:"refused,omitempty"` // why the bundle was refused as a whole
}

// ExportedBundle is one of our bundles and the events it carries.
type ExportedBundle struct {
	Name      string    `json:"name"`
	Seq       int64     `json:"seq"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	EventIDs  []string  `json:"event_ids"`
	Full      bool      `json:"full,omitempty"` // carries the backpack's files
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{Version: LedgerVersion, Folders: map[string]*FolderState{}} }

// Folder returns the state of the folder at path, creating it.
func (l *Ledger) Folder(path string) *FolderState {
	f := l.Folders[path]
	if f == nil {
		f = &FolderState{Seen: map[string]*SeenBundle{}, NextSeq: 1}
		l.Folders[path] = f
	}
	if f.Seen == nil {
		f.Seen = map[string]*SeenBundle{}
	}
	return f
}

// LoadLedger reads the ledger at path; a missing file is an empty ledger.
func LoadLedger(path string) (*Ledger, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewLedger(), nil
	}
	if err != nil {
		return nil, err
	}
	l := NewLedger()
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	if l.Version != LedgerVersion {
		return nil, fmt.Errorf("ledger %s: unknown version %d", path, l.Version)
	}
	if l.Folders == nil {
		l.Folders = map[string]*FolderState{}
	}
	return l, nil
}

// Save writes the ledger atomically.
func (l *Ledger) Save(path string) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// carried returns the event ids our bundles still present carry.
func (f *FolderState) carried() map[string]bool {
	out := map[string]bool{}
	for _, e := range f.Exported {
		for _, id := range e.EventIDs {
			out[id] = true
		}
	}
	return out
}

// seenKeys returns the keys of Seen, sorted.
func (f *FolderState) seenKeys() []string {
	keys := make([]string, 0, len(f.Seen))
	for k := range f.Seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hasFull reports whether one of our bundles present is a full-history
// bundle.
func (f *FolderState) hasFull() bool {
	for _, e := range f.Exported {
		if e.Full {
			return true
		}
	}
	return false
}
