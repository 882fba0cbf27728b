package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// root is one directory tree being followed. Fields other than st are
// only touched by Run's goroutine; st is guarded by Watcher.mu.
type root struct {
	dir   string
	depth int
	poll  bool // AddPolled
	mode  Mode
	// forced: polled because of the filesystem type or ForcePoll, so
	// rescans do not try inotify again (degraded roots do).
	forced bool
	dirs   map[string]int      // directory → level below dir; watched when mode is watching
	known  map[string]fileStat // what was last reported per path

	st RootStatus
}

// fileStat is what decides whether a file changed.
type fileStat struct {
	size  int64
	mtime int64 // UnixNano
	ino   uint64
}

func statOf(fi fs.FileInfo) fileStat {
	return fileStat{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ino: inode(fi)}
}

// candidate is a file seen to change, waiting to settle.
type candidate struct {
	r     *root
	seen  fileStat  // the last stat taken
	first time.Time // when it became a candidate
	due   time.Time // when to look again
	cause string
}

// loop is Run's state; only Run's goroutine touches it.
type loop struct {
	w      *Watcher
	fsw    *fsnotify.Watcher // nil if inotify could not be opened
	fswErr error
	active map[string]*root
	owner  map[string]*root // watched directory → its root
	cands  map[string]*candidate
	q      *queue
	settle *time.Timer
	armed  bool // settle is running
}

// Run does all the work until ctx is done, then closes the inotify
// instance and the Changes channel and returns nil. It can be called
// once; it returns ErrRunning or ErrClosed otherwise.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	switch w.state {
	case stateRunning:
		w.mu.Unlock()
		return ErrRunning
	case stateDone:
		w.mu.Unlock()
		return ErrClosed
	}
	w.state = stateRunning
	w.mu.Unlock()

	l := &loop{
		w:      w,
		active: make(map[string]*root),
		owner:  make(map[string]*root),
		cands:  make(map[string]*candidate),
		q:      newQueue(),
		settle: time.NewTimer(time.Hour),
	}
	l.settle.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if !w.opts.ForcePoll {
		// A buffer lets the kernel queue drain while this goroutine scans.
		l.fsw, l.fswErr = fsnotify.NewBufferedWatcher(256)
		if l.fswErr != nil {
			w.opts.Logger.Warn("watcher: inotify unavailable, polling every root", "err", l.fswErr)
		} else {
			events, errs = l.fsw.Events, l.fsw.Errors
		}
	}
	defer l.close()

	poll := time.NewTicker(w.opts.Poll)
	defer poll.Stop()
	var rescanC <-chan time.Time
	if w.opts.Rescan > 0 {
		t := time.NewTicker(w.opts.Rescan)
		defer t.Stop()
		rescanC = t.C
	}

	for {
		var out chan<- Change
		next, ok := l.q.peek()
		if ok {
			out = w.changes
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
			l.requests()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.dropEvent == nil || !w.dropEvent(ev) {
				l.event(ev)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			l.fsnotifyError(err)
		case err := <-w.inject:
			l.fsnotifyError(err)
		case <-l.settle.C:
			l.armed = false
			l.settleDue(time.Now())
		case <-poll.C:
			l.pollTick()
		case <-rescanC:
			l.rescanAll(false)
		case <-w.rescan:
			l.rescanAll(true)
		case out <- next:
			l.q.pop()
			if r := l.active[next.Root]; r != nil {
				w.updateStatus(r, func(s *RootStatus) { s.Notices++ })
			}
		}
		l.arm()
	}
}

func (l *loop) close() {
	l.settle.Stop()
	if l.fsw != nil {
		if err := l.fsw.Close(); err != nil {
			l.w.opts.Logger.Warn("watcher: close inotify", "err", err)
		}
	}
	l.w.mu.Lock()
	l.w.state = stateDone
	l.w.mu.Unlock()
	close(l.w.changes)
}

// arm runs the settle timer for the earliest candidate, if not running.
func (l *loop) arm() {
	if l.armed || len(l.cands) == 0 {
		return
	}
	var first time.Time
	for _, c := range l.cands {
		if first.IsZero() || c.due.Before(first) {
			first = c.due
		}
	}
	l.settle.Reset(max(time.Until(first), time.Millisecond))
	l.armed = true
}

// requests applies what Add and Remove recorded.
func (l *loop) requests() {
	l.w.mu.Lock()
	reqs := l.w.reqs
	l.w.reqs = nil
	l.w.mu.Unlock()
	for _, q := range reqs {
		r := q.r
		switch {
		case q.remove:
			l.drop(r)
		case l.active[r.dir] == r && r.poll != q.poll:
			r.depth, r.poll = q.depth, q.poll
			l.setup(r, CauseRescan)
		case l.active[r.dir] == r:
			r.depth = q.depth
			l.scan(r, CauseRescan)
		default:
			r.depth, r.poll = q.depth, q.poll
			r.dirs = make(map[string]int)
			r.known = make(map[string]fileStat)
			l.active[r.dir] = r
			l.setup(r, CauseStart)
		}
	}
}

// drop forgets r entirely: Remove was called.
func (l *loop) drop(r *root) {
	if l.active[r.dir] != r {
		return
	}
	l.unwatch(r, r.dir)
	for p, c := range l.cands {
		if c.r == r {
			delete(l.cands, p)
		}
	}
	l.q.dropRoot(r.dir)
	delete(l.active, r.dir)
}

// setup decides how r is followed, then scans it. It starts afresh:
// watches left from before are dropped, and the scan adds them again.
func (l *loop) setup(r *root, cause string) {
	l.unwatch(r, r.dir)
	fi, err := os.Stat(r.dir)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", r.dir)
	}
	if err != nil {
		l.missing(r, err)
		return
	}
	name, why, err := detectFS(r.dir)
	if err != nil {
		l.setError(r, err)
	}
	r.forced = false
	var reason string
	switch {
	case l.w.opts.ForcePoll:
		r.mode, r.forced, reason = ModePolling, true, "polling: forced by options"
	case r.poll:
		r.mode, r.forced, reason = ModePolling, true, "polling: asked for this root"
	case why != "":
		r.mode, r.forced, reason = ModePolling, true, fmt.Sprintf("polling: %s filesystem; %s", name, why)
	case l.fsw == nil:
		r.mode, reason = ModeDegraded, fmt.Sprintf("degraded: polling; inotify unavailable: %v", l.fswErr)
	default:
		r.mode = ModeWatching
	}
	l.w.opts.Logger.Info("watcher: root set up", "root", r.dir, "mode", r.mode, "fs", name, "reason", reason)
	l.w.updateStatus(r, func(s *RootStatus) {
		s.Mode, s.FSType, s.Reason, s.Poll = r.mode, name, reason, 0
		if r.mode != ModeWatching {
			s.Poll = l.w.opts.Poll
		}
	})
	l.scan(r, cause)
}

// missing records that r's directory is gone: its watches are dropped,
// its files reported removed, and it is retried every Poll.
func (l *loop) missing(r *root, err error) {
	l.unwatch(r, r.dir)
	l.forgetUnder(r, r.dir, CauseRescan)
	if r.mode != ModeMissing {
		l.w.opts.Logger.Warn("watcher: root missing", "root", r.dir, "err", err)
	}
	r.mode = ModeMissing
	now := time.Now()
	l.w.updateStatus(r, func(s *RootStatus) {
		s.Mode, s.Reason, s.Poll = ModeMissing, "missing: "+err.Error(), l.w.opts.Poll
		s.LastError, s.LastErrorAt = err.Error(), now
		s.Dirs, s.Files = 0, 0
	})
}

// degrade switches r from inotify to polling after a watch failed.
func (l *loop) degrade(r *root, err error) {
	l.unwatch(r, r.dir)
	r.mode = ModeDegraded
	l.w.opts.Logger.Warn("watcher: inotify watch failed, polling", "root", r.dir, "err", err)
	now := time.Now()
	l.w.updateStatus(r, func(s *RootStatus) {
		s.Mode, s.Reason, s.Poll = ModeDegraded, "degraded: polling; inotify watch failed: "+err.Error(), l.w.opts.Poll
		s.LastError, s.LastErrorAt = err.Error(), now
	})
}

func (l *loop) setError(r *root, err error) {
	now := time.Now()
	l.w.updateStatus(r, func(s *RootStatus) { s.LastError, s.LastErrorAt = err.Error(), now })
}

// fsnotifyError handles an error from fsnotify: an overflow means events
// were lost, so every watched root is rescanned.
func (l *loop) fsnotifyError(err error) {
	if !errors.Is(err, fsnotify.ErrEventOverflow) {
		l.w.opts.Logger.Warn("watcher: fsnotify", "err", err)
		for _, r := range l.active {
			if r.mode == ModeWatching {
				l.setError(r, err)
			}
		}
		return
	}
	l.w.opts.Logger.Warn("watcher: inotify queue overflowed, rescanning")
	for _, r := range l.active {
		if r.mode != ModeWatching {
			continue
		}
		now := time.Now()
		l.w.updateStatus(r, func(s *RootStatus) {
			s.Overflows++
			s.LastError, s.LastErrorAt = "inotify event queue overflowed; rescanned", now
		})
		l.scan(r, CauseOverflow)
	}
}

func (l *loop) pollTick() {
	for _, r := range l.active {
		switch r.mode {
		case ModePolling, ModeDegraded:
			l.scan(r, CausePoll)
		case ModeMissing:
			l.setup(r, CauseRescan)
		}
	}
}

// rescanAll scans the watched roots; with retry (RescanNow) it also
// retries missing and degraded roots.
func (l *loop) rescanAll(retry bool) {
	for _, r := range l.active {
		switch {
		case r.mode == ModeWatching:
			l.scan(r, CauseRescan)
		case r.mode == ModeDegraded && !r.forced, r.mode == ModeMissing && retry:
			l.setup(r, CauseRescan)
		case retry:
			l.scan(r, CauseRescan)
		}
	}
}

// event handles one fsnotify event. Create, Write, Remove and Rename all
// mean "look at this path again"; Chmod alone is noise.
func (l *loop) event(ev fsnotify.Event) {
	if ev.Op&^fsnotify.Chmod == 0 {
		return
	}
	name := filepath.Clean(ev.Name)
	if r, ok := l.owner[name]; ok && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
		// A watched directory itself was removed or moved away; its watch
		// is gone or follows the old inode.
		level := r.dirs[name]
		l.unwatch(r, name)
		if fi, err := os.Lstat(name); err == nil && fi.IsDir() {
			// Already replaced by another directory: follow that one.
			if name == r.dir {
				l.setup(r, CauseRescan)
			} else {
				l.scanTree(r, name, level, CauseEvent)
			}
			return
		}
		if name == r.dir {
			l.missing(r, fmt.Errorf("%s was removed or moved away", name))
			return
		}
		l.forgetUnder(r, name, CauseEvent)
		l.publish(r)
		return
	}
	parent := filepath.Dir(name)
	r, ok := l.owner[parent]
	if !ok || l.w.opts.Ignore(filepath.Base(name)) {
		return
	}
	level := r.dirs[parent]
	fi, err := os.Lstat(name)
	switch {
	case err != nil:
		if _, isDir := r.dirs[name]; isDir {
			l.unwatch(r, name)
		}
		l.forgetUnder(r, name, CauseEvent)
	case fi.IsDir():
		if r.depth < 0 || level < r.depth {
			l.scanTree(r, name, level+1, CauseEvent)
		}
	case fi.Mode().IsRegular():
		l.touch(r, name, statOf(fi), CauseEvent)
	}
}

// touch makes path a candidate that settles after Settle from now.
func (l *loop) touch(r *root, path string, st fileStat, cause string) {
	now := time.Now()
	if c, ok := l.cands[path]; ok {
		c.seen, c.due = st, l.due(c, now)
		return
	}
	l.cands[path] = &candidate{r: r, seen: st, first: now, due: now.Add(l.w.opts.Settle), cause: cause}
}

// due is when to look at c again after a change seen at now: after
// Settle, or at its MaxWait deadline if that comes first.
func (l *loop) due(c *candidate, now time.Time) time.Time {
	due := now.Add(l.w.opts.Settle)
	if mw := l.w.opts.MaxWait; mw > 0 && c.first.Add(mw).Before(due) {
		return c.first.Add(mw)
	}
	return due
}

// overdue reports whether c has waited MaxWait.
func (l *loop) overdue(c *candidate, now time.Time) bool {
	return l.w.opts.MaxWait > 0 && !now.Before(c.first.Add(l.w.opts.MaxWait))
}

// settleDue reports the candidates that stayed unchanged for Settle.
func (l *loop) settleDue(now time.Time) {
	touched := make(map[*root]bool)
	defer func() {
		for r := range touched {
			l.publish(r)
		}
	}()
	for path, c := range l.cands {
		if c.due.After(now) {
			continue
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			delete(l.cands, path)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				l.removed(c.r, path, c.cause)
				touched[c.r] = true
			}
			continue
		}
		st := statOf(fi)
		if st != c.seen && !l.overdue(c, now) {
			c.seen, c.due = st, l.due(c, now)
			continue
		}
		delete(l.cands, path)
		l.report(c.r, path, st, fi, c.cause)
		touched[c.r] = true
	}
}

// report queues a notice for path unless it is what was last reported.
func (l *loop) report(r *root, path string, st fileStat, fi fs.FileInfo, cause string) {
	prev, had := r.known[path]
	if had && prev == st {
		return
	}
	r.known[path] = st
	l.q.put(Change{Root: r.dir, Path: path, Size: fi.Size(), ModTime: fi.ModTime(), Cause: cause}, had)
}

// removed queues a removal notice for path if it was reported.
func (l *loop) removed(r *root, path string, cause string) {
	if _, had := r.known[path]; !had {
		return
	}
	delete(r.known, path)
	l.q.putRemoved(Change{Root: r.dir, Path: path, Cause: cause, Removed: true})
}

// forgetUnder reports the removal of every file at or below path and
// drops their candidates.
func (l *loop) forgetUnder(r *root, path string, cause string) {
	for p := range r.known {
		if within(p, path) {
			l.removed(r, p, cause)
		}
	}
	for p, c := range l.cands {
		if c.r == r && within(p, path) {
			delete(l.cands, p)
		}
	}
}

// unwatch drops r's directories at or below dir, and their watches.
func (l *loop) unwatch(r *root, dir string) {
	for d := range r.dirs {
		if within(d, dir) {
			l.unwatchOne(r, d)
		}
	}
}

func (l *loop) unwatchOne(r *root, d string) {
	if l.owner[d] == r {
		delete(l.owner, d)
		// The kernel may have dropped the watch already (the directory
		// was deleted), so an error here means nothing.
		_ = l.fsw.Remove(d)
	}
	delete(r.dirs, d)
}

// publish copies r's directory and file counts to its status.
func (l *loop) publish(r *root) {
	dirs, files := len(r.dirs), len(r.known)
	l.w.updateStatus(r, func(s *RootStatus) { s.Dirs, s.Files = dirs, files })
}
