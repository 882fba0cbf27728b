package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/backpack-field/backpack/internal/canon"
)

// Repair describes what OpenAppender did about a log that did not end with
// a line break.
type Repair struct {
	// Offset is where the unterminated tail started.
	Offset int64
	// Tail holds the tail's bytes.
	Tail []byte
	// Completed is true when the tail was a whole JSON object that only
	// lacked its newline, and a newline was appended. Otherwise the tail
	// was a torn write: it was handed to SaveTorn and truncated away.
	Completed bool
}

// AppenderOptions configures OpenAppender.
type AppenderOptions struct {
	// SaveTorn keeps the bytes of a torn last line before they are cut
	// from the log (a quarantine). When nil, a torn tail makes
	// OpenAppender fail with ErrTornTail instead of losing it.
	SaveTorn func(offset int64, tail []byte) error
	// Create creates the file if it does not exist.
	Create bool
}

// Appender is the single writer of an events.ndjson file. It holds an
// exclusive flock(2) on the file's directory for as long as it is open, which other
// processes (and other Appenders in this one) see as ErrLocked. It is not
// safe for concurrent use; callers serialize Append.
type Appender struct {
	f    *os.File
	lock *os.File // the file's directory, flocked: stable across Replace
	path string
	size int64
	prev int64 // size before the last Write, until Sync
}

// maxTornTail bounds how much of an unterminated tail is examined.
const maxTornTail = MaxLineSize + 2

// OpenAppender opens path for appending, takes the lock, and repairs an
// unterminated last line: a complete JSON object gets its missing newline;
// anything else is a torn write, saved through opts.SaveTorn and then cut
// off. Complete lines are never touched.
func OpenAppender(path string, opts AppenderOptions) (*Appender, *Repair, error) {
	flags := os.O_RDWR | os.O_APPEND
	if opts.Create {
		flags |= os.O_CREATE
	}
	// The lock is on the directory, not the file, so that it survives
	// Replace (a rename over the file).
	lock, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	a := &Appender{f: f, lock: lock, path: path}
	st, err := f.Stat()
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	a.size = st.Size()
	rep, err := a.repairTail(opts)
	a.prev = a.size
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, rep, nil
}

// Replace writes data as the file's new content, keeping the lock: a temp
// file in the same directory, fsync, rename over the file, fsync of the
// directory. A crash leaves the old or the new file, whole. data must end
// with a line break (or be empty).
func (a *Appender) Replace(data []byte) error {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return errors.New("log: replacement does not end with a line break")
	}
	dir := filepath.Dir(a.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(a.path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("replace %s: %w", a.path, err)
	}
	if err := os.Rename(tmp.Name(), a.path); err != nil {
		return fmt.Errorf("replace %s: %w", a.path, err)
	}
	if err := a.lock.Sync(); err != nil {
		return fmt.Errorf("replace %s: sync directory: %w", a.path, err)
	}
	f, err := os.OpenFile(a.path, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	a.f.Close()
	a.f = f
	a.size = int64(len(data))
	a.prev = a.size
	return nil
}

func (a *Appender) repairTail(opts AppenderOptions) (*Repair, error) {
	if a.size == 0 {
		return nil, nil
	}
	var last [1]byte
	if _, err := a.f.ReadAt(last[:], a.size-1); err != nil {
		return nil, fmt.Errorf("read %s: %w", a.path, err)
	}
	if last[0] == '\n' || last[0] == '\r' {
		return nil, nil
	}
	// Find the start of the unterminated tail.
	start, tail, err := a.findTail()
	if err != nil {
		return nil, err
	}
	rep := &Repair{Offset: start, Tail: tail}
	if v, err := ParseLine(stripPy(tail)); err == nil && v.Kind() == canon.Object {
		if _, err := a.f.Write([]byte{'\n'}); err != nil {
			return nil, fmt.Errorf("complete last line of %s: %w", a.path, err)
		}
		if err := a.f.Sync(); err != nil {
			return nil, err
		}
		a.size++
		rep.Completed = true
		return rep, nil
	}
	if opts.SaveTorn == nil {
		return rep, fmt.Errorf("%w at byte %d (%d bytes); refusing to cut it without a place to keep it", ErrTornTail, start, len(tail))
	}
	if err := opts.SaveTorn(start, tail); err != nil {
		return rep, fmt.Errorf("keep torn tail of %s: %w", a.path, err)
	}
	if err := a.f.Truncate(start); err != nil {
		return rep, fmt.Errorf("cut torn tail of %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return rep, err
	}
	a.size = start
	return rep, nil
}

// findTail returns the offset and bytes after the last line break.
func (a *Appender) findTail() (int64, []byte, error) {
	const chunk = 64 << 10
	end := a.size
	var tail []byte
	for end > 0 {
		n := int64(chunk)
		if n > end {
			n = end
		}
		buf := make([]byte, n)
		if _, err := a.f.ReadAt(buf, end-n); err != nil && err != io.EOF {
			return 0, nil, err
		}
		if i := bytes.LastIndexAny(buf, "\r\n"); i >= 0 {
			tail = append(buf[i+1:], tail...)
			return end - n + int64(i) + 1, tail, nil
		}
		tail = append(buf, tail...)
		end -= n
		if int64(len(tail)) > maxTornTail {
			// A tail this long is not one torn line we can keep in
			// memory; keep it whole anyway, it is still the tail.
			continue
		}
	}
	return 0, tail, nil
}

// ChangedError reports that the log's size changed behind the Appender's
// back: another program, ignoring the lock, appended or truncated it. The
// caller must re-read the log from Want before appending.
type ChangedError struct {
	Path      string
	Want, Got int64
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("log: %s changed outside backpack (size %d, expected %d)", e.Path, e.Got, e.Want)
}

// Resync accepts the file's current size as the Appender's own, after the
// caller has read and ingested whatever another program appended.
func (a *Appender) Resync() error {
	st, err := a.f.Stat()
	if err != nil {
		return err
	}
	a.size = st.Size()
	return nil
}

// Size returns the file size after the last successful Append.
func (a *Appender) Size() int64 { return a.size }

// Path returns the file's path.
func (a *Appender) Path() string { return a.path }

// Append writes lines (each without its newline) in one write, each
// followed by "\n", and fsyncs. Lines must be single lines. On error the
// file is cut back to its previous size, so a failed append leaves no
// partial line.
func (a *Appender) Append(lines ...[]byte) error {
	if err := a.Write(lines...); err != nil {
		return err
	}
	return a.Sync()
}

// Write is Append without the fsync: the lines are in the file (visible
// to readers) but not yet durable. Call Sync before reporting them
// written; if Sync fails, call Rollback.
func (a *Appender) Write(lines ...[]byte) error {
	n := 0
	for _, l := range lines {
		if bytes.ContainsAny(l, "\r\n") {
			return errors.New("log: appended line contains a line break")
		}
		n += len(l) + 1
	}
	buf := make([]byte, 0, n)
	for _, l := range lines {
		buf = append(buf, l...)
		buf = append(buf, '\n')
	}
	st, err := a.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != a.size {
		return &ChangedError{Path: a.path, Want: a.size, Got: st.Size()}
	}
	// O_APPEND: the kernel writes at the true end even if a process that
	// ignores the lock appended since the check above.
	if _, err := a.f.Write(buf); err != nil {
		a.rollback()
		return fmt.Errorf("append to %s: %w", a.path, err)
	}
	a.prev = a.size
	a.size += int64(n)
	return nil
}

// Sync makes the written lines durable. On error it cuts them off again.
func (a *Appender) Sync() error {
	if err := a.f.Sync(); err != nil {
		a.Rollback()
		return fmt.Errorf("sync %s: %w", a.path, err)
	}
	a.prev = a.size
	return nil
}

// CutTo truncates the file back to off (which must not be past its end)
// and fsyncs, returning the bytes cut. The caller keeps them somewhere:
// it is for undoing a batch an interrupted process wrote only in part.
func (a *Appender) CutTo(off int64) ([]byte, error) {
	if off < 0 || off > a.size {
		return nil, fmt.Errorf("log: cut to %d outside the file (%d bytes)", off, a.size)
	}
	cut := make([]byte, a.size-off)
	if _, err := a.f.ReadAt(cut, off); err != nil && err != io.EOF {
		return nil, err
	}
	if err := a.f.Truncate(off); err != nil {
		return nil, err
	}
	if err := a.f.Sync(); err != nil {
		return nil, err
	}
	a.size, a.prev = off, off
	return cut, nil
}

// ReplaceTail makes the file's bytes from off on be tail (which must end
// with a line break): it truncates the file at off, writes tail and
// fsyncs. The bytes before off are not touched. It is not atomic: the
// caller keeps what it needs to finish or undo it after a crash.
func (a *Appender) ReplaceTail(off int64, tail []byte) error {
	if off < 0 || off > a.size {
		return fmt.Errorf("log: replace from %d outside the file (%d bytes)", off, a.size)
	}
	if len(tail) > 0 && tail[len(tail)-1] != '\n' {
		return errors.New("log: replacement does not end with a line break")
	}
	st, err := a.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != a.size {
		return &ChangedError{Path: a.path, Want: a.size, Got: st.Size()}
	}
	if err := a.f.Truncate(off); err != nil {
		return fmt.Errorf("replace the tail of %s: %w", a.path, err)
	}
	a.size, a.prev = off, off
	if _, err := a.f.Write(tail); err != nil {
		return fmt.Errorf("replace the tail of %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("replace the tail of %s: %w", a.path, err)
	}
	a.size = off + int64(len(tail))
	a.prev = a.size
	return nil
}

// Rollback cuts off the lines of the last Write.
func (a *Appender) Rollback() {
	a.size = a.prev
	a.rollback()
}

func (a *Appender) rollback() {
	a.f.Truncate(a.size)
	a.f.Sync()
}

// Close releases the lock and closes the file.
func (a *Appender) Close() error {
	err := a.f.Close()
	if cerr := a.lock.Close(); err == nil {
		err = cerr
	}
	return err
}
