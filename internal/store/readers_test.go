package store_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestTailRewriteSparesLockedReaders: a merge that puts events before the
// last lines rewrites the log's tail in place, unless a reader holds the
// readers' lock on it; then the whole file is replaced and the reader
// keeps reading the bytes it opened, unchanged.
func TestTailRewriteSparesLockedReaders(t *testing.T) {
	for _, held := range []bool{false, true} {
		name := map[bool]string{false: "no reader", true: "reader holds the log"}[held]
		t.Run(name, func(t *testing.T) {
			a, b, key := replicas(t)
			appendN(t, a, key, "base", 30, clock())
			os.RemoveAll(b)
			copyDir(t, a, b)
			// b's events fall between a's.
			step := func(start time.Duration) func() time.Time {
				t := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(start)
				return func() time.Time {
					t = t.Add(20 * time.Second)
					return t
				}
			}
			ca, cb := step(0), step(10*time.Second)
			appendN(t, a, key, "north", 3, ca)
			appendN(t, b, key, "south", 3, cb)
			logPath := filepath.Join(a, store.EventsPath)
			before := mustRead(t, logPath)
			ino := inode(t, logPath)
			var r *os.File
			if held {
				var err error
				if r, err = bplog.OpenShared(context.Background(), logPath, time.Second); err != nil {
					t.Fatal(err)
				}
				defer r.Close()
			}
			res := ingest(t, a, key, logLinesOf(t, b), "replica b")
			if len(res.Applied) != 3 {
				t.Fatalf("applied %d events, want 3", len(res.Applied))
			}
			after := mustRead(t, logPath)
			if after == before || len(after) <= len(before) {
				t.Fatal("the merge did not change the log")
			}
			if after[len(after)-len(before)/4:] == before[len(before)-len(before)/4:] {
				t.Fatal("the merged events did not go before the last lines: no rewrite to test")
			}
			mustVerify(t, a)
			if got := inode(t, logPath) == ino; got == held {
				t.Fatalf("log kept its inode: %v, want %v (reader held: %v)", got, !held, held)
			}
			if held {
				got, err := io.ReadAll(r)
				if err != nil || string(got) != before {
					t.Fatalf("the reader read %d bytes (%v), want the %d it opened", len(got), err, len(before))
				}
			}
		})
	}
}

// TestLockSharedWaitsForRewrite: a reader waits while a writer holds the
// log for an in-place rewrite, and gives up after its wait.
func TestLockSharedWaitsForRewrite(t *testing.T) {
	dir, res := newBackpack(t)
	app, _, err := bplog.OpenAppender(filepath.Join(dir, store.EventsPath), bplog.AppenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	_ = res
	unlock, ok, err := app.LockReaders()
	if err != nil || !ok {
		t.Fatalf("LockReaders with no reader: %v %v", ok, err)
	}
	if _, err := bplog.OpenShared(context.Background(), app.Path(), 30*time.Millisecond); err == nil {
		t.Fatal("a reader got the log while a rewrite held it")
	}
	done := make(chan error, 1)
	go func() {
		f, err := bplog.OpenShared(context.Background(), app.Path(), 10*time.Second)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	unlock()
	if err := <-done; err != nil {
		t.Fatalf("the reader did not get the log after the rewrite: %v", err)
	}
	f, err := bplog.OpenShared(context.Background(), app.Path(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := app.LockReaders(); ok {
		t.Fatal("LockReaders succeeded while a reader held the log")
	}
	f.Close()
	if unlock, ok, _ := app.LockReaders(); !ok {
		t.Fatal("LockReaders failed after the reader closed the log")
	} else {
		unlock()
	}
}
