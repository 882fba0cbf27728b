package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// ErrReleased is returned by writes to a Backpack whose lock was given up
// with Release and not yet taken back with Reacquire.
var ErrReleased = errors.New("store: backpack released (Reacquire it before writing)")

// A long-running process (the agent) keeps a Backpack open between its
// bursts of work but must not keep other programs from writing: Release
// gives up the writer lock and keeps everything in memory; Reacquire
// takes the lock back and catches up with whatever other writers did
// meanwhile. When they only appended (the common case: a CLI append or
// import, the reference's `provara append`), only the appended lines are
// read, so catching up costs time in what changed, not in the size of
// the backpack. Anything else (a rewrite by a merge, a replaced or
// shortened file, a settled journal) means a full reload, from the state
// cache when it still matches.

// releaseCacheTail is how many events not in the state cache Release
// lets accumulate (with a quarter of the log) before writing the cache.
const releaseCacheTail = 50000

// released is what Release remembers about the log.
type released struct {
	at   time.Time
	size int64
	id   TailID
}

// Reacquired says what Reacquire found.
type Reacquired struct {
	// Appended counts lines other writers appended while released.
	Appended int
	// Reloaded is why the state was rebuilt from the files ("" when it
	// was not): the log was rewritten, replaced or cut, or a journal was
	// settled.
	Reloaded string
}

// Release writes the state cache if it is far behind, then gives up the
// writer lock. The Backpack stays usable for reads (its
// snapshot and state are as of the release); writes fail with
// ErrReleased until Reacquire. Releasing a read-only or already released
// Backpack does nothing.
func (b *Backpack) Release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.app == nil {
		return nil
	}
	var err error
	// The cache only serves the next cold open, and this process keeps
	// its state: rewrite it (time in the size of the backpack) only once
	// replaying what it lacks would cost more than a blink.
	if b.indexScanned || (b.cacheDueLocked() && b.sinceCache >= max(releaseCacheTail, b.entries/4)) {
		err = b.writeCacheLocked()
		if err == nil {
			err = b.writeDerivedLocked()
		}
	}
	r := &released{at: time.Now(), size: b.logSize}
	id, terr := FileTail(b.path(EventsPath), r.size)
	if terr != nil {
		r.size = -1 // unrecognisable: reload at Reacquire
	}
	r.id = id
	if cerr := b.app.Close(); err == nil {
		err = cerr
	}
	b.app = nil
	b.released = r
	return err
}

// Reacquire takes the writer lock back after Release and brings the
// in-memory state up to what is on disk. While another process writes it
// waits up to Options.LockWait, then returns bplog.ErrLocked (as Open
// does); the Backpack then stays released. With thorough, it also checks
// the whole log prefix it holds by its hash (time in the size of the
// log), not only the recognisable tail.
func (b *Backpack) Reacquire(ctx context.Context, thorough bool) (*Reacquired, error) {
	return b.ReacquireWait(ctx, thorough, b.opts.LockWait)
}

// ReacquireWait is Reacquire waiting up to wait for the lock.
func (b *Backpack) ReacquireWait(ctx context.Context, thorough bool, wait time.Duration) (*Reacquired, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released == nil {
		if b.app == nil {
			return nil, ErrReadOnly
		}
		return &Reacquired{}, nil
	}
	t0 := time.Now()
	defer func() { b.log.Debug("reacquire", "took", time.Since(t0)) }()
	if err := b.openAppenderWaiting(ctx, wait); err != nil {
		return nil, err
	}
	r := b.released
	reason, err := b.catchUpLocked(ctx, r, thorough)
	if err != nil {
		b.app.Close()
		b.app = nil
		return nil, err
	}
	b.released = nil
	res := &Reacquired{Reloaded: reason}
	before := b.lines
	if reason != "" {
		b.log.Info("reloading the backpack", "reason", reason)
		b.resetLocked()
		if err := b.load(ctx); err != nil {
			return nil, b.failReacquireLocked(r, err)
		}
	} else {
		f, err := os.Open(b.path(EventsPath))
		if err != nil {
			return nil, b.failReacquireLocked(r, err)
		}
		err = b.scanTailLocked(ctx, f)
		f.Close()
		if err != nil {
			// The in-memory state may have absorbed part of the tail:
			// rebuild it from the files.
			b.resetLocked()
			if lerr := b.load(ctx); lerr != nil {
				return nil, b.failReacquireLocked(r, errors.Join(err, lerr))
			}
			res.Reloaded = "reading the appended lines failed: " + err.Error()
		} else {
			res.Appended = b.lines - before
		}
	}
	if err := b.catchUpKeysLocked(); err != nil {
		return nil, b.failReacquireLocked(r, err)
	}
	if err := b.refreshDerivedIfStale(); err != nil {
		return nil, b.failReacquireLocked(r, err)
	}
	return res, b.publishLocked()
}

// failReacquireLocked releases the lock again after a failed Reacquire,
// so the next Reacquire starts from the files.
func (b *Backpack) failReacquireLocked(r *released, err error) error {
	b.app.Close()
	b.app = nil
	r.size = -1 // forces a reload next time
	b.released = r
	return err
}

// catchUpLocked decides, with the lock held, whether the log is the one
// Release left plus appended lines: it returns "" if so, else why not.
func (b *Backpack) catchUpLocked(ctx context.Context, r *released, thorough bool) (string, error) {
	if r.size < 0 {
		return "the last reacquire failed", nil
	}
	// Another writer's crash left a journal: settling it may put back or
	// cut bytes.
	if err := b.settleRewriteJournal(); err != nil {
		return "", err
	}
	if err := b.settleJournal(); err != nil {
		return "", err
	}
	b.cleanTemps()
	// Keys and policies may have changed with the appended lines (a trust
	// command); they are small.
	if err := b.loadKeys(); err != nil {
		return "", err
	}
	if err := b.loadSigner(); err != nil && !errors.Is(err, ErrNoKey) {
		return "", err
	}
	size := b.app.Size()
	if size < r.size {
		return fmt.Sprintf("events.ndjson is shorter (%d bytes, was %d)", size, r.size), nil
	}
	id, err := FileTail(b.path(EventsPath), r.size)
	if err != nil {
		return "", err
	}
	switch {
	case id.Dev != r.id.Dev || id.Ino != r.id.Ino:
		return "events.ndjson was replaced", nil
	case id.Tail != r.id.Tail:
		return "events.ndjson was rewritten", nil
	}
	if thorough {
		f, err := os.Open(b.path(EventsPath))
		if err != nil {
			return "", err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, r.size)); err != nil {
			return "", err
		}
		if !bytes.Equal(h.Sum(nil), b.logHash.Sum(nil)) {
			return "events.ndjson was rewritten before its last 64 KiB", nil
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return "", nil
}

// resetLocked forgets the in-memory state so that load rebuilds it.
func (b *Backpack) resetLocked() {
	b.state, b.pending = nil, nil
	b.index, b.indexScanned = nil, false
	b.logSize, b.lines, b.entries, b.sinceCache = 0, 0, 0, 0
	b.cleanLines, b.cleanOffset = 0, 0
	b.base = nil
}

// TailID identifies a file and the last bytes before an offset in it.
type TailID struct {
	Dev, Ino uint64
	Tail     [32]byte // SHA-256 of the TailWindow bytes before the offset
}

// TailWindow is how much of a log's end FileTail fingerprints.
const TailWindow = 64 << 10

// FileTail returns the identity of the file at path and the hash of the
// TailWindow bytes before size: what Reacquire (and the agent) use to
// recognise that bytes already read are still there.
func FileTail(path string, size int64) (TailID, error) {
	var id TailID
	f, err := os.Open(path)
	if err != nil {
		return id, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return id, err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(sys.Dev), sys.Ino
	}
	from := max(size-TailWindow, 0)
	buf := make([]byte, size-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return id, err
	}
	id.Tail = sha256.Sum256(buf)
	return id, nil
}
