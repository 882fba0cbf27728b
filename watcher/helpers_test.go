package watcher_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backpack-field/backpack/watcher"
)

// wait is how long a test waits for a notice that should come. It is
// generous: the machines are small and shared.
const wait = 15 * time.Second

// collector receives every notice of one Watcher.
type collector struct {
	mu     sync.Mutex
	got    []watcher.Change
	notify chan struct{} // closed and replaced on every notice
	done   chan struct{} // closed when Changes is closed
}

func collect(ch <-chan watcher.Change) *collector {
	c := &collector{notify: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ch := range ch {
			c.mu.Lock()
			c.got = append(c.got, ch)
			close(c.notify)
			c.notify = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	return c
}

// waitFor returns the first notice that matches, waiting up to wait.
func (c *collector) waitFor(t *testing.T, what string, match func(watcher.Change) bool) watcher.Change {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		for _, ch := range c.got {
			if match(ch) {
				c.mu.Unlock()
				return ch
			}
		}
		notify := c.notify
		c.mu.Unlock()
		select {
		case <-notify:
		case <-deadline:
			t.Fatalf("no notice for %s within %v; got:\n%s", what, wait, c.dump())
		}
	}
}

// waitPath waits for a notice (not a removal) for path.
func (c *collector) waitPath(t *testing.T, path string) watcher.Change {
	t.Helper()
	return c.waitFor(t, path, func(ch watcher.Change) bool { return ch.Path == path && !ch.Removed })
}

func (c *collector) waitRemoved(t *testing.T, path string) watcher.Change {
	t.Helper()
	return c.waitFor(t, "removal of "+path, func(ch watcher.Change) bool { return ch.Path == path && ch.Removed })
}

// all returns the notices for path so far.
func (c *collector) all(path string) []watcher.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []watcher.Change
	for _, ch := range c.got {
		if ch.Path == path {
			out = append(out, ch)
		}
	}
	return out
}

func (c *collector) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, ch := range c.got {
		b.WriteString("  " + ch.Cause + " " + ch.Path)
		if ch.Removed {
			b.WriteString(" (removed)")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// sentinel writes a file with a name that sorts nowhere special and waits
// for its notice: everything the watcher was going to report about
// earlier writes has been queued by then, give or take one settle period.
func (c *collector) sentinel(t *testing.T, dir string, settle time.Duration) {
	t.Helper()
	p := filepath.Join(dir, "sentinel-"+time.Now().Format("150405.000000000"))
	write(t, p, "s")
	c.waitPath(t, p)
	// Anything still settling would have had the same time to settle.
	time.Sleep(2 * settle)
}

// run starts w with the given roots and stops it when the test ends.
func run(t *testing.T, w *watcher.Watcher, roots map[string]int) *collector {
	t.Helper()
	for dir, depth := range roots {
		if err := w.Add(dir, depth); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := collect(w.Changes())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		<-c.done
	})
	return c
}

func newWatcher(t *testing.T, opts watcher.Options) *watcher.Watcher {
	t.Helper()
	w, err := watcher.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitStatus waits until the status of root satisfies ok.
func waitStatus(t *testing.T, w *watcher.Watcher, root string, what string, ok func(watcher.RootStatus) bool) watcher.RootStatus {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, s := range w.Status() {
			if s.Root == root && ok(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s never showed %s: %+v", root, what, w.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
