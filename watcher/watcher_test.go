package watcher_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/backpack-field/backpack/watcher"
)

func TestCreateWriteRenameInto(t *testing.T) {
	t.Parallel()
	dir, outside := t.TempDir(), t.TempDir()
	w := newWatcher(t, watcher.Options{})
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })

	a := filepath.Join(dir, "a")
	write(t, a, "hello")
	got := c.waitPath(t, a)
	if got.Size != 5 || got.Root != dir || got.Cause != watcher.CauseEvent {
		t.Errorf("create: got %+v, want size 5, root %s, cause event", got, dir)
	}

	f, err := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(" world"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got = c.waitFor(t, "append to a", func(ch watcher.Change) bool { return ch.Path == a && ch.Size == 11 })
	if got.Cause != watcher.CauseEvent {
		t.Errorf("append: cause %q", got.Cause)
	}

	src := filepath.Join(outside, "b")
	write(t, src, "moved in")
	b := filepath.Join(dir, "b")
	if err := os.Rename(src, b); err != nil {
		t.Fatal(err)
	}
	if got := c.waitPath(t, b); got.Size != 8 {
		t.Errorf("rename into: got %+v", got)
	}

	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	c.waitRemoved(t, a)
	if n := len(c.all(b)); n != 1 {
		t.Errorf("b reported %d times", n)
	}
}

func TestBurstIsOneNotice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const settle = 500 * time.Millisecond
	w := newWatcher(t, watcher.Options{Settle: settle})
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })

	p := filepath.Join(dir, "burst")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := fmt.Fprintf(f, "line %02d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := c.waitPath(t, p)
	if got.Size != 50*8 {
		t.Errorf("first notice has size %d, want %d (the burst was split)", got.Size, 50*8)
	}
	c.sentinel(t, dir, settle)
	if n := len(c.all(p)); n != 1 {
		t.Errorf("burst reported %d times, want 1", n)
	}
}

func TestTempFileRenameReportsFinalName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{})
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })

	for tmp, final := range map[string]string{
		".bundle1.tmp-1234":        "bundle1",     // backpack's own writers
		"bundle2.part":             "bundle2",     // NNCP, browsers
		"bundle3.zst.a1b2.partial": "bundle3.zst", // rclone
		".syncthing.bundle4.tmp":   "bundle4",     // Syncthing
		"~syncthing~bundle5.tmp":   "bundle5",
		"bundle6.!sync":            "bundle6", // Resilio
		".#bundle7":                "bundle7",
	} {
		tp, fp := filepath.Join(dir, tmp), filepath.Join(dir, final)
		f, err := os.Create(tp)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := f.WriteString("0123456789"); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tp, fp); err != nil {
			t.Fatal(err)
		}
		if got := c.waitPath(t, fp); got.Size != 100 {
			t.Errorf("%s: got %+v", final, got)
		}
	}
	c.sentinel(t, dir, watcher.DefaultSettle)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.got {
		if watcher.DefaultIgnore(filepath.Base(ch.Path)) {
			t.Errorf("temporary name reported: %+v", ch)
		}
	}
}

func TestIgnoredNamesNeverReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{})
	c := run(t, w, map[string]int{dir: 2})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })

	names := []string{".hidden", "x.tmp", "X.TMP", "x.part", "x.partial", "x~", ".syncthing.x.tmp",
		"~syncthing~x.tmp", "x.!sync", ".#x", "#x#", "x.crdownload", "x.abcd1234.partial", "~$report.docx", "x.swp"}
	for _, n := range names {
		write(t, filepath.Join(dir, n), "data")
	}
	// Nor anything inside an ignored directory.
	mkdir(t, filepath.Join(dir, ".stversions"))
	write(t, filepath.Join(dir, ".stversions", "old"), "data")
	c.sentinel(t, dir, watcher.DefaultSettle)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.got {
		if !strings.HasPrefix(filepath.Base(ch.Path), "sentinel-") {
			t.Errorf("reported: %+v", ch)
		}
	}
}

func TestGrowingFileWaitsUntilItStops(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const settle = time.Second
	w := newWatcher(t, watcher.Options{Settle: settle})
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })

	p := filepath.Join(dir, "growing")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	start := time.Now()
	for time.Since(start) < 2*settle {
		n, err := f.WriteString("more data\n")
		if err != nil {
			t.Fatal(err)
		}
		size += int64(n)
		if got := c.all(p); len(got) > 0 {
			t.Fatalf("reported while still growing: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := c.waitPath(t, p); got.Size != size {
		t.Errorf("got size %d, want %d", got.Size, size)
	}
}

func TestSubdirectoriesWithinDepth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{})
	// PEER/<something>/<device-id>/file: depth 2.
	c := run(t, w, map[string]int{dir: 2})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })

	// Created in one go: the file may land before the new directories
	// are watched, and the scan of each new directory must find it.
	deep := filepath.Join(dir, "usb", "dev-1")
	mkdir(t, deep)
	f1 := filepath.Join(deep, "bundle")
	write(t, f1, "one")
	c.waitPath(t, f1)

	// One level too deep: never reported.
	tooDeep := filepath.Join(deep, "nested")
	mkdir(t, tooDeep)
	write(t, filepath.Join(tooDeep, "x"), "x")

	// A directory at depth 1, made elsewhere and moved in whole.
	other := filepath.Join(t.TempDir(), "dev-2")
	mkdir(t, other)
	write(t, filepath.Join(other, "b"), "b")
	moved := filepath.Join(dir, "usb", "dev-2")
	if err := os.Rename(other, moved); err != nil {
		t.Fatal(err)
	}
	c.waitPath(t, filepath.Join(moved, "b"))
	// And its later files, through its new watch.
	write(t, filepath.Join(moved, "c"), "c")
	c.waitPath(t, filepath.Join(moved, "c"))

	c.sentinel(t, deep, watcher.DefaultSettle)
	if got := c.all(filepath.Join(tooDeep, "x")); len(got) != 0 {
		t.Errorf("beyond depth reported: %+v", got)
	}
	s := waitStatus(t, w, dir, "4 directories", func(s watcher.RootStatus) bool { return s.Dirs == 4 })
	if s.Mode != watcher.ModeWatching {
		t.Errorf("mode %s", s.Mode)
	}

	// Removing a directory reports its files removed and drops its watch.
	if err := os.RemoveAll(deep); err != nil {
		t.Fatal(err)
	}
	c.waitRemoved(t, f1)
	waitStatus(t, w, dir, "3 directories", func(s watcher.RootStatus) bool { return s.Dirs == 3 })
}

func TestStartScanReportsExistingFilesOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := []string{"a", "b", filepath.Join("sub", "c")}
	mkdir(t, filepath.Join(dir, "sub", "deeper"))
	for _, f := range files {
		write(t, filepath.Join(dir, f), f)
	}
	write(t, filepath.Join(dir, "sub", "deeper", "d"), "beyond depth 1")
	write(t, filepath.Join(dir, "e.tmp"), "ignored")

	w := newWatcher(t, watcher.Options{Rescan: 300 * time.Millisecond})
	c := run(t, w, map[string]int{dir: 1})
	for _, f := range files {
		if got := c.waitPath(t, filepath.Join(dir, f)); got.Cause != watcher.CauseStart {
			t.Errorf("%s: cause %q, want start", f, got.Cause)
		}
	}
	// Let a few periodic rescans pass: they must not report again.
	first := w.Status()[0].LastScan
	waitStatus(t, w, dir, "two more scans", func(s watcher.RootStatus) bool {
		return s.LastScan.Sub(first) > 500*time.Millisecond
	})
	c.sentinel(t, dir, watcher.DefaultSettle)
	for _, f := range files {
		if n := len(c.all(filepath.Join(dir, f))); n != 1 {
			t.Errorf("%s reported %d times", f, n)
		}
	}
	if got := c.all(filepath.Join(dir, "sub", "deeper", "d")); len(got) != 0 {
		t.Errorf("beyond depth reported: %+v", got)
	}
	if s := w.Status()[0]; s.Files != len(files)+1 || s.Notices != uint64(len(files)+1) {
		t.Errorf("status files %d notices %d, want %d", s.Files, s.Notices, len(files)+1)
	}
}

func TestPeriodicRescanFindsMissedChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{Rescan: 500 * time.Millisecond})
	watcher.DropEvents(w, func(p string) bool { return strings.Contains(p, "lost") })
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })

	p := filepath.Join(dir, "lost")
	write(t, p, "behind the watcher's back")
	if got := c.waitPath(t, p); got.Cause != watcher.CauseRescan {
		t.Errorf("cause %q, want rescan", got.Cause)
	}
	write(t, p, "changed again, still unseen")
	got := c.waitFor(t, "second change", func(ch watcher.Change) bool { return ch.Path == p && ch.Size == 27 })
	if got.Cause != watcher.CauseRescan {
		t.Errorf("cause %q, want rescan", got.Cause)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if got := c.waitRemoved(t, p); got.Cause != watcher.CauseRescan {
		t.Errorf("removal cause %q, want rescan", got.Cause)
	}
}

func TestRescanNow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{Rescan: -1})
	watcher.DropEvents(w, func(p string) bool { return strings.Contains(p, "lost") })
	c := run(t, w, map[string]int{dir: 0})
	kept := filepath.Join(dir, "kept")
	write(t, kept, "k")
	c.waitPath(t, kept)

	p := filepath.Join(dir, "lost")
	write(t, p, "x")
	w.RescanNow()
	if got := c.waitPath(t, p); got.Cause != watcher.CauseRescan {
		t.Errorf("cause %q, want rescan", got.Cause)
	}
	if n := len(c.all(kept)); n != 1 {
		t.Errorf("unchanged file reported %d times", n)
	}
}

func TestOverflowRescans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{Rescan: -1})
	var lose atomic.Bool
	lose.Store(true)
	watcher.DropEvents(w, func(string) bool { return lose.Load() })
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })

	p := filepath.Join(dir, "lost-in-overflow")
	write(t, p, "x")
	watcher.InjectError(w, fmt.Errorf("read: %w", fsnotify.ErrEventOverflow))
	if got := c.waitPath(t, p); got.Cause != watcher.CauseOverflow {
		t.Errorf("cause %q, want overflow", got.Cause)
	}
	s := w.Status()[0]
	if s.Overflows != 1 || !strings.Contains(s.LastError, "overflow") {
		t.Errorf("status after overflow: %+v", s)
	}
	lose.Store(false)
}

func TestForcePoll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	write(t, old, "before start")
	w := newWatcher(t, watcher.Options{ForcePoll: true, Poll: 100 * time.Millisecond, Rescan: -1})
	c := run(t, w, map[string]int{dir: 1})
	if got := c.waitPath(t, old); got.Cause != watcher.CauseStart {
		t.Errorf("cause %q, want start", got.Cause)
	}
	s := w.Status()[0]
	if s.Mode != watcher.ModePolling || s.Reason != "polling: forced by options" || s.Poll != 100*time.Millisecond {
		t.Errorf("status %+v", s)
	}

	// Create, in a new subdirectory too.
	mkdir(t, filepath.Join(dir, "sub"))
	a := filepath.Join(dir, "sub", "a")
	write(t, a, "a")
	if got := c.waitPath(t, a); got.Cause != watcher.CausePoll {
		t.Errorf("cause %q, want poll", got.Cause)
	}
	// Modify.
	write(t, a, "a, longer")
	c.waitFor(t, "modified a", func(ch watcher.Change) bool { return ch.Path == a && ch.Size == 9 })
	// Temp file + rename: only the final name, and the old name removed.
	tmp := filepath.Join(dir, "b.part")
	write(t, tmp, "bb")
	b := filepath.Join(dir, "b")
	if err := os.Rename(tmp, b); err != nil {
		t.Fatal(err)
	}
	c.waitPath(t, b)
	if err := os.Rename(b, filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	c.waitRemoved(t, b)
	c.waitPath(t, filepath.Join(dir, "c"))
	if got := c.all(tmp); len(got) != 0 {
		t.Errorf("temp name reported: %+v", got)
	}
}

func TestStatusOnLocalFilesystem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{})
	run(t, w, map[string]int{dir: 0})
	s := waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode != watcher.ModeStarting })
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	name, why := watcher.Classify(uint32(st.Type))
	if why != "" {
		// The temp dir is on a network or FUSE filesystem.
		if s.Mode != watcher.ModePolling || !strings.HasPrefix(s.Reason, "polling: "+name+" filesystem; inotify cannot see") {
			t.Errorf("temp dir on %s: status %+v", name, s)
		}
		return
	}
	if s.Mode != watcher.ModeWatching || s.FSType != name || s.Reason != "" || s.Poll != 0 {
		t.Errorf("temp dir on %s: status %+v", name, s)
	}
	t.Logf("temp dir on %s: %s", s.FSType, s.Mode)
}

func TestDegradedWhenWatchFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{Poll: 100 * time.Millisecond})
	watcher.FailWatch(w, func(string) error { return fmt.Errorf("inotify_add_watch: %w", syscall.ENOSPC) })
	c := run(t, w, map[string]int{dir: 0})
	s := waitStatus(t, w, dir, "degraded", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeDegraded })
	if !strings.Contains(s.Reason, "no space left on device") || !strings.Contains(s.LastError, "no space left on device") {
		t.Errorf("status %+v", s)
	}
	p := filepath.Join(dir, "still-seen")
	write(t, p, "x")
	if got := c.waitPath(t, p); got.Cause != watcher.CausePoll {
		t.Errorf("cause %q, want poll", got.Cause)
	}
}

func TestMissingRootComesBack(t *testing.T) {
	t.Parallel()
	stick := filepath.Join(t.TempDir(), "USBSTICK")
	w := newWatcher(t, watcher.Options{Poll: 100 * time.Millisecond})
	c := run(t, w, map[string]int{stick: 1})
	s := waitStatus(t, w, stick, "missing", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeMissing })
	if !strings.Contains(s.LastError, "no such file") {
		t.Errorf("status %+v", s)
	}

	// Plugged in.
	mkdir(t, filepath.Join(stick, "dev-1"))
	p := filepath.Join(stick, "dev-1", "bundle")
	write(t, p, "x")
	c.waitPath(t, p)
	waitStatus(t, w, stick, "watching", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })

	// Pulled out.
	if err := os.RemoveAll(stick); err != nil {
		t.Fatal(err)
	}
	c.waitRemoved(t, p)
	waitStatus(t, w, stick, "missing again", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeMissing })
}

func TestSlowConsumerGetsLatestState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const settle = 50 * time.Millisecond
	w := newWatcher(t, watcher.Options{Settle: settle})
	if err := w.Add(dir, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })

	// Nobody reads Changes while the file changes many times.
	p := filepath.Join(dir, "f")
	for i := range 10 {
		write(t, p, strings.Repeat("x", i+1))
		time.Sleep(3 * settle)
	}
	// Once reading starts, at most two notices remain: the one pending
	// (coalesced) and possibly one for a change still settling.
	var got []watcher.Change
	timeout := time.After(wait)
	for len(got) == 0 || got[len(got)-1].Size != 10 {
		select {
		case ch := <-w.Changes():
			got = append(got, ch)
		case <-timeout:
			t.Fatalf("final state never reported; got %+v", got)
		}
	}
	if len(got) > 2 {
		t.Errorf("%d notices, want at most 2: %+v", len(got), got)
	}
}

func TestAddErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{})
	if err := w.Add(dir, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(filepath.Join(dir, "inside"), 0); !errors.Is(err, watcher.ErrOverlap) {
		t.Errorf("nested root: %v, want ErrOverlap", err)
	}
	if err := w.Add(filepath.Dir(dir), 0); !errors.Is(err, watcher.ErrOverlap) {
		t.Errorf("parent root: %v, want ErrOverlap", err)
	}
	if err := w.Add(dir, 3); err != nil {
		t.Errorf("re-add with a new depth: %v", err)
	}
	if err := w.Remove(filepath.Join(dir, "other")); !errors.Is(err, watcher.ErrNotWatched) {
		t.Errorf("remove unknown: %v", err)
	}
	if err := w.Remove(dir); err != nil {
		t.Error(err)
	}
	if s := w.Status(); len(s) != 0 {
		t.Errorf("status after remove: %+v", s)
	}
	if _, err := watcher.New(watcher.Options{Settle: -1}); err == nil {
		t.Error("negative settle accepted")
	}
}

func TestRemoveRoot(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	w := newWatcher(t, watcher.Options{})
	c := run(t, w, map[string]int{a: 0, b: 0})
	waitStatus(t, w, a, "set up", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })
	waitStatus(t, w, b, "set up", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })
	if err := w.Remove(a); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(a, "ignored-now"), "x")
	c.sentinel(t, b, watcher.DefaultSettle)
	if got := c.all(filepath.Join(a, "ignored-now")); len(got) != 0 {
		t.Errorf("removed root reported: %+v", got)
	}
	// Added again: a fresh start.
	if err := w.Add(a, 0); err != nil {
		t.Fatal(err)
	}
	if got := c.waitPath(t, filepath.Join(a, "ignored-now")); got.Cause != watcher.CauseStart {
		t.Errorf("cause %q, want start", got.Cause)
	}
}

// Not parallel: parallel tests wait until the sequential ones are done,
// so the goroutine count is this test's alone.
func TestRunStopsWithoutLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := range 3 {
		dir := t.TempDir()
		w := newWatcher(t, watcher.Options{})
		if err := w.Add(dir, 2); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- w.Run(ctx) }()
		p := filepath.Join(dir, fmt.Sprint(i))
		write(t, p, "x")
		select {
		case ch := <-w.Changes():
			if ch.Path != p {
				t.Errorf("got %+v", ch)
			}
		case <-time.After(wait):
			t.Fatal("no notice")
		}
		// Leave a notice pending: Run must not block on it.
		write(t, filepath.Join(dir, "pending"), fmt.Sprint(i))
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return")
		}
		for range w.Changes() {
			// Closed after Run returns.
		}
		if err := w.Run(context.Background()); !errors.Is(err, watcher.ErrClosed) {
			t.Errorf("second Run: %v", err)
		}
		if err := w.Add(dir, 0); !errors.Is(err, watcher.ErrClosed) {
			t.Errorf("Add after Run: %v", err)
		}
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMaxWaitReportsABusyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{Settle: 300 * time.Millisecond, MaxWait: 600 * time.Millisecond})
	c := run(t, w, map[string]int{dir: 0})
	waitStatus(t, w, dir, "set up", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })

	// A log appended to without ever pausing for Settle.
	p := filepath.Join(dir, "events.ndjson")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadline := time.Now().Add(wait)
	for len(c.all(p)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a file appended to every 20ms was reported %d times in %v", len(c.all(p)), wait)
		}
		if _, err := f.WriteString("{}\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := c.all(p)
	if got[0].Size >= got[1].Size {
		t.Errorf("sizes %d then %d", got[0].Size, got[1].Size)
	}
}

func TestAddPolledAndBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWatcher(t, watcher.Options{Poll: 100 * time.Millisecond, Rescan: -1})
	if err := w.AddPolled(dir, 0); err != nil {
		t.Fatal(err)
	}
	c := run(t, w, nil)
	s := waitStatus(t, w, dir, "polling", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModePolling })
	if s.Reason != "polling: asked for this root" {
		t.Errorf("reason %q", s.Reason)
	}
	a := filepath.Join(dir, "a")
	write(t, a, "a")
	if got := c.waitPath(t, a); got.Cause != watcher.CausePoll {
		t.Errorf("cause %q, want poll", got.Cause)
	}

	if err := w.Add(dir, 0); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, w, dir, "watching", func(s watcher.RootStatus) bool { return s.Mode == watcher.ModeWatching })
	b := filepath.Join(dir, "b")
	write(t, b, "b")
	if got := c.waitPath(t, b); got.Cause != watcher.CauseEvent {
		t.Errorf("cause %q, want event", got.Cause)
	}
	if n := len(c.all(a)); n != 1 {
		t.Errorf("a reported %d times across the switch", n)
	}
}
