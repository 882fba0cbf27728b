package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// The readers' lock. A tail rewritten in place (Appender.ReplaceTail)
// changes bytes a reader may be reading, so readers that must see the log
// whole take a shared flock(2) on the log file itself while they read, and
// a writer rewrites in place only when it can take it exclusively at once
// (Appender.LockReaders); otherwise it replaces the whole file, and the
// readers keep the old inode. Appends take no part: they never change
// bytes already there. Programs that do not take the lock are not
// protected (docs/FORMAT.md, "Rewriting the log").

// LockShared takes the readers' shared lock on f, an open log file,
// waiting up to wait while a writer holds it for an in-place rewrite.
// Unlock it with Unlock, or by closing f.
func LockShared(ctx context.Context, f *os.File, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	delay := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s for reading: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is being rewritten for more than %v", f.Name(), wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// Unlock gives back the readers' lock LockShared took on f.
func Unlock(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

// OpenShared opens the log file at path for reading under the readers'
// shared lock (see LockShared); closing the file gives the lock back.
func OpenShared(ctx context.Context, path string, wait time.Duration) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := LockShared(ctx, f, wait); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// LockReaders takes the readers' lock exclusively on the log file, without
// waiting: ok is false while a reader holds it, and then the caller must
// not change bytes in place (ReplaceTail) but replace the whole file.
// unlock gives the lock back. It is not the writers' lock (that one is on
// the directory).
func (a *Appender) LockReaders() (unlock func(), ok bool, err error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s against readers: %w", a.path, err)
	}
	return func() { f.Close() }, true, nil
}
