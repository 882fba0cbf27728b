package watcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// scanState collects what one walk saw.
type scanState struct {
	cause    string
	dirs     map[string]int  // directories read, with their level
	files    map[string]bool // files seen
	failed   []string        // directories that could not be read
	watchErr error           // the watch failure that degrades the root
}

// scan walks all of r: a full reconciliation of watches, candidates and
// reported files. A missing root directory marks r missing.
func (l *loop) scan(r *root, cause string) {
	if _, err := os.Stat(r.dir); err != nil {
		l.missing(r, err)
		return
	}
	l.scanTree(r, r.dir, 0, cause)
	now := time.Now()
	l.w.updateStatus(r, func(s *RootStatus) { s.LastScan = now })
}

// scanTree walks top, a directory at the given level below r.dir: it
// watches directories not yet watched (when r is watched with inotify),
// makes candidates of files that differ from what was reported, reports
// the removal of files no longer there, and forgets directories no
// longer there.
func (l *loop) scanTree(r *root, top string, level int, cause string) {
	sc := &scanState{cause: cause, dirs: make(map[string]int), files: make(map[string]bool)}
	l.walk(r, top, level, sc)
	if sc.watchErr != nil {
		l.degrade(r, sc.watchErr)
		for d, lv := range sc.dirs {
			r.dirs[d] = lv
		}
	}
	skip := func(p string) bool {
		for _, f := range sc.failed {
			if within(p, f) {
				return true
			}
		}
		return false
	}
	for p := range r.known {
		if within(p, top) && !sc.files[p] && !skip(p) {
			l.removed(r, p, cause)
		}
	}
	for d := range r.dirs {
		if _, ok := sc.dirs[d]; !ok && within(d, top) && !skip(d) {
			l.unwatchOne(r, d)
		}
	}
	l.publish(r)
}

// walk reads dir and, within r's depth, its subdirectories.
func (l *loop) walk(r *root, dir string, level int, sc *scanState) {
	sc.dirs[dir] = level
	if r.mode == ModeWatching && sc.watchErr == nil && l.owner[dir] != r {
		if err := l.addWatch(dir); err != nil {
			err = fmt.Errorf("watch %s: %w", dir, err)
			if level == 0 || exhausted(err) {
				sc.watchErr = err
			} else {
				l.setError(r, err)
			}
		} else {
			l.owner[dir] = r
		}
	}
	r.dirs[dir] = level
	ents, err := os.ReadDir(dir)
	if err != nil {
		// A directory that vanished has no files; one that cannot be
		// read keeps what was reported from it.
		if !errors.Is(err, fs.ErrNotExist) {
			sc.failed = append(sc.failed, dir)
			l.setError(r, err)
		}
		return
	}
	for _, e := range ents {
		name := e.Name()
		if l.w.opts.Ignore(name) {
			continue
		}
		p := filepath.Join(dir, name)
		switch t := e.Type(); {
		case t.IsDir():
			if r.depth < 0 || level < r.depth {
				l.walk(r, p, level+1, sc)
			}
		case t.IsRegular():
			fi, err := e.Info()
			if err != nil {
				continue // gone since ReadDir
			}
			sc.files[p] = true
			l.consider(r, p, statOf(fi), sc.cause)
		}
	}
}

func (l *loop) addWatch(dir string) error {
	if f := l.w.failWatch; f != nil {
		if err := f(dir); err != nil {
			return err
		}
	}
	return l.fsw.Add(dir)
}

// consider makes a scanned file a candidate if it differs from what was
// last reported and is not a candidate already.
func (l *loop) consider(r *root, path string, st fileStat, cause string) {
	if _, ok := l.cands[path]; ok {
		return
	}
	if prev, ok := r.known[path]; ok && prev == st {
		return
	}
	l.touch(r, path, st, cause)
}

// exhausted reports whether a watch failed for lack of kernel resources,
// which would leave the root partly watched.
func exhausted(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENOMEM)
}
