package watcher

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for the zero values of Options.
const (
	DefaultSettle = 200 * time.Millisecond
	DefaultRescan = 5 * time.Minute
	DefaultPoll   = 2 * time.Second
)

// Causes: what made the watcher look at a file.
const (
	CauseStart    = "start"    // the scan when a root is added
	CauseEvent    = "event"    // an fsnotify event
	CauseRescan   = "rescan"   // the periodic rescan, RescanNow, or a root coming back
	CausePoll     = "poll"     // a poll of a root that is not watched with inotify
	CauseOverflow = "overflow" // the rescan after fsnotify lost events
)

var (
	// ErrClosed is returned by Add and Run once Run has returned.
	ErrClosed = errors.New("watcher: closed")
	// ErrRunning is returned by a second call to Run.
	ErrRunning = errors.New("watcher: already running")
	// ErrOverlap is returned by Add for a directory inside or above a root
	// already added.
	ErrOverlap = errors.New("watcher: directory overlaps a watched root")
	// ErrNotWatched is returned by Remove for a directory that is not a root.
	ErrNotWatched = errors.New("watcher: directory is not watched")
)

// Options configures a Watcher. The zero value is ready to use.
type Options struct {
	// Settle is how long a file must stay quiet, with the same size and
	// modification time, before it is reported. Default DefaultSettle.
	Settle time.Duration
	// MaxWait, if positive, bounds how long a file that keeps changing
	// waits: once it has been changing for MaxWait it is reported even if
	// not quiet, then again after each further MaxWait. Useful for a log
	// that is appended to without pause; zero waits for quiet, however
	// long that takes.
	MaxWait time.Duration
	// Rescan is the interval of full rescans of watched roots, which
	// catch what inotify missed. Default DefaultRescan; negative disables.
	Rescan time.Duration
	// Poll is the scan interval of roots that are polled rather than
	// watched. Default DefaultPoll.
	Poll time.Duration
	// ForcePoll polls every root, whatever its filesystem.
	ForcePoll bool
	// Ignore reports whether a base name (file or directory) is skipped.
	// Default DefaultIgnore. It is called from Run's goroutine only.
	Ignore func(name string) bool
	// Logger receives mode changes and errors. Default: discard.
	Logger *slog.Logger
}

// Change is one notice: a file under Root is ready (or, if Removed, gone).
type Change struct {
	Root    string // the root, as Status names it
	Path    string // absolute path of the file
	Size    int64
	ModTime time.Time
	Cause   string // CauseStart, CauseEvent, CauseRescan, CausePoll or CauseOverflow
	// Removed reports that a file reported earlier no longer exists (or
	// is no longer within its root's depth); Size and ModTime are zero.
	Removed bool
}

// Mode is how a root is followed.
type Mode string

const (
	ModeStarting Mode = "starting" // added, Run has not set it up yet
	ModeWatching Mode = "watching" // inotify, with periodic rescans
	ModePolling  Mode = "polling"  // scanned every Poll: filesystem type or ForcePoll
	ModeDegraded Mode = "degraded" // polled because an inotify watch failed
	ModeMissing  Mode = "missing"  // the root directory does not exist; retried every Poll
)

// RootStatus describes one root at the time Status was called.
type RootStatus struct {
	Root   string
	Depth  int
	Mode   Mode
	FSType string // "ext4", "tmpfs", "nfs", "fuse", ... or the hex f_type
	// Reason says why the root is polled, degraded or missing, e.g.
	// "polling: nfs filesystem; inotify cannot see other machines' writes".
	Reason      string
	Poll        time.Duration // poll interval, when polling or degraded
	Dirs        int           // directories watched or scanned
	Files       int           // files reported and still present
	LastScan    time.Time     // end of the last full scan
	LastError   string        // empty if none yet
	LastErrorAt time.Time
	Notices     uint64 // notices delivered on Changes
	Overflows   uint64 // fsnotify queue overflows, each followed by a rescan
}

// Watcher follows directory trees and reports files that are ready. Add,
// Remove, RescanNow, Changes and Status are safe for concurrent use, before
// and during Run.
type Watcher struct {
	opts    Options
	changes chan Change
	wake    chan struct{} // one slot: requests are waiting
	rescan  chan struct{} // one slot: RescanNow was called
	inject  chan error    // tests inject fsnotify errors here

	// dropEvent, when set by a test before Run, discards the fsnotify
	// events it returns true for.
	dropEvent func(fsnotify.Event) bool
	// failWatch, when set by a test before Run, makes adding a watch on
	// a directory fail with the error it returns.
	failWatch func(dir string) error

	// mu guards the fields below and every root's st.
	mu    sync.Mutex
	roots map[string]*root // by directory
	reqs  []request
	state int // stateNew, stateRunning, stateDone
}

const (
	stateNew = iota
	stateRunning
	stateDone
)

type request struct {
	r      *root
	remove bool
	depth  int  // the depth asked for
	poll   bool // polling asked for (AddPolled)
}

// New returns a Watcher with opts, filling in defaults. It opens nothing:
// Run does.
func New(opts Options) (*Watcher, error) {
	if opts.Settle < 0 || opts.Poll < 0 || opts.MaxWait < 0 {
		return nil, fmt.Errorf("watcher: negative Settle, Poll or MaxWait")
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Rescan == 0 {
		opts.Rescan = DefaultRescan
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Ignore == nil {
		opts.Ignore = DefaultIgnore
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		opts:    opts,
		changes: make(chan Change),
		wake:    make(chan struct{}, 1),
		rescan:  make(chan struct{}, 1),
		inject:  make(chan error),
		roots:   make(map[string]*root),
	}, nil
}

// Add follows dir to the given depth (0: only dir's own files; negative:
// no limit). The directory need not exist yet: it is then "missing" and
// retried every Poll. Adding a root again changes its depth and rescans
// it. A directory inside or above another root is refused with
// ErrOverlap. Run sets the root up; Add itself only records it.
func (w *Watcher) Add(dir string, depth int) error { return w.add(dir, depth, false) }

// AddPolled is Add for a root that is always polled, whatever its
// filesystem: for a mount that statfs cannot tell is shared. Adding an
// existing root with Add or AddPolled switches it between the two.
func (w *Watcher) AddPolled(dir string, depth int) error { return w.add(dir, depth, true) }

func (w *Watcher) add(dir string, depth int, poll bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("watcher: add %s: %w", dir, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == stateDone {
		return ErrClosed
	}
	if r, ok := w.roots[abs]; ok {
		r.st.Depth = depth
		w.requestLocked(request{r: r, depth: depth, poll: poll})
		return nil
	}
	for other := range w.roots {
		if within(abs, other) || within(other, abs) {
			return fmt.Errorf("add %s: %w (%s)", abs, ErrOverlap, other)
		}
	}
	r := &root{dir: abs, depth: depth, st: RootStatus{Root: abs, Depth: depth, Mode: ModeStarting}}
	w.roots[abs] = r
	w.requestLocked(request{r: r, depth: depth, poll: poll})
	return nil
}

// Remove stops following dir. Notices for it not yet delivered are
// discarded; no Removed notices are sent for its files.
func (w *Watcher) Remove(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("watcher: remove %s: %w", dir, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.roots[abs]
	if !ok {
		return fmt.Errorf("remove %s: %w", abs, ErrNotWatched)
	}
	delete(w.roots, abs)
	w.requestLocked(request{r: r, remove: true})
	return nil
}

func (w *Watcher) requestLocked(q request) {
	w.reqs = append(w.reqs, q)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// RescanNow asks Run to scan every root now, and to retry roots that are
// missing or degraded. Only differences from what was reported are
// reported (cause "rescan"). It does not wait.
func (w *Watcher) RescanNow() {
	select {
	case w.rescan <- struct{}{}:
	default:
	}
}

// Changes returns the channel of notices. It is unbuffered, closed when
// Run returns, and the same channel on every call. Notices not yet
// received when Run returns are discarded.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Status returns the state of every root, sorted by directory.
func (w *Watcher) Status() []RootStatus {
	w.mu.Lock()
	out := make([]RootStatus, 0, len(w.roots))
	for _, r := range w.roots {
		out = append(out, r.st)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b RootStatus) int { return cmp.Compare(a.Root, b.Root) })
	return out
}

// updateStatus changes r's published status under mu.
func (w *Watcher) updateStatus(r *root, f func(*RootStatus)) {
	w.mu.Lock()
	f(&r.st)
	w.mu.Unlock()
}

// within reports whether path is dir or lies below it (both clean).
func within(path, dir string) bool {
	if path == dir {
		return true
	}
	if dir == string(filepath.Separator) {
		return true
	}
	return strings.HasPrefix(path, dir) && path[len(dir)] == filepath.Separator
}
