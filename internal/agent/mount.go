package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/backpack-field/backpack/fusefs"
	"github.com/backpack-field/backpack/watcher"
)

// ReadMode says how events.ndjson is read through a mount
// (fusefs.ReadMode).
type ReadMode = fusefs.ReadMode

// ParseReadMode parses a --read-mode value.
func ParseReadMode(s string) (ReadMode, error) { return fusefs.ParseReadMode(s) }

// MountOptions configures Mount.
type MountOptions struct {
	Dir        string // the backpack
	Mountpoint string // an existing empty directory
	// KeyFile is the device key that signs new/ observations (default:
	// the store's search order).
	KeyFile string
	Logger  *slog.Logger // default: discard
	// LockWait bounds how long a write through the mount waits for the
	// backpack's lock while another process writes (default 15 s); then
	// the write fails with EBUSY.
	LockWait time.Duration
	// StatusEvery is how often status.json is refreshed from a running
	// agent (default 5 s). Without an agent it changes with the backpack.
	StatusEvery time.Duration
	// Settle is the watcher's settle period (default 100 ms).
	Settle time.Duration
	// ReadMode is how events.ndjson is read (default
	// fusefs.ReadPassthrough).
	ReadMode ReadMode
	// Debug logs every FUSE request (to Logger, at debug level).
	Debug bool
	// OnPanic, if set, is called with the value of a panic in a FUSE
	// handler (tests fail on it).
	OnPanic func(any)
}

// Mounted is a backpack mounted with fusefs: the FUSE server, the store
// behind it, and the goroutines that keep it current (a watcher on the
// backpack and its device directory, and the status). Stop it with
// Unmount, or let Serve do it.
type Mounted struct {
	srv    *fusefs.Server
	src    *MountSource
	log    *slog.Logger
	dir    string
	dev    string
	stage  string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Mount mounts the backpack in opts.Dir on opts.Mountpoint (see fusefs)
// and keeps the mount current as the backpack changes, until Unmount. It
// fails with fusefs.ErrNoFUSE when FUSE cannot be used, and with
// fusefs.ErrMounted when something else is mounted there.
func Mount(ctx context.Context, opts MountOptions) (*Mounted, error) {
	return mount(ctx, opts, nil)
}

// mount mounts; with a, the mount shows a's status, pushed as it
// changes, instead of asking an agent for it.
func mount(ctx context.Context, opts MountOptions, a *Agent) (*Mounted, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StatusEvery <= 0 {
		opts.StatusEvery = 5 * time.Second
	}
	if opts.Settle <= 0 {
		opts.Settle = 100 * time.Millisecond
	}
	dir, uid, dev, err := locate(opts.Dir)
	if err != nil {
		return nil, err
	}
	// The device directory holds the staged bundles; watch it from the
	// start.
	if err := os.MkdirAll(dev, 0o700); err != nil {
		return nil, err
	}
	src, err := NewMountSource(dir, MountSourceOptions{KeyFile: opts.KeyFile, Logger: opts.Logger, LockWait: opts.LockWait, Status: a == nil})
	if err != nil {
		return nil, err
	}
	m := &Mounted{src: src, log: opts.Logger, dir: dir, dev: dev, stage: filepath.Join(dev, "mount-inbox")}
	m.srv, err = fusefs.Mount(ctx, fusefs.Options{Dir: dir, Mountpoint: opts.Mountpoint, Source: src, StageDir: m.stage,
		Logger: opts.Logger, ReadMode: opts.ReadMode, Debug: opts.Debug, OnPanic: opts.OnPanic})
	if err != nil {
		src.Close()
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Go(func() { m.watch(bg, opts.Settle) })
	if a != nil {
		m.wg.Go(func() { m.followAgent(bg, a) })
	} else {
		m.wg.Go(func() { m.pollStatus(bg, uid, opts.StatusEvery) })
	}
	return m, nil
}

// Mountpoint returns where the backpack is mounted.
func (m *Mounted) Mountpoint() string { return m.srv.Mountpoint() }

// Refresh shows the backpack as it is now, without waiting for the
// watcher.
func (m *Mounted) Refresh(ctx context.Context) error { return m.srv.Refresh(ctx) }

// Serve waits until ctx ends, then unmounts, or until the file system is
// unmounted from outside (fusermount3 -u). It returns Unmount's error.
func (m *Mounted) Serve(ctx context.Context) error {
	err := m.srv.Serve(ctx)
	m.stop()
	return err
}

// Unmount unmounts (see fusefs.Server.Unmount) and stops keeping the
// mount current.
func (m *Mounted) Unmount() error {
	err := m.srv.Unmount()
	m.stop()
	return err
}

func (m *Mounted) stop() {
	m.once.Do(func() {
		m.cancel()
		m.wg.Wait()
		if err := m.src.Close(); err != nil {
			m.log.Warn("mount: closing the backpack", "err", err)
		}
	})
}

// watch follows the backpack and its device directory and asks for a new
// view when something the mount shows changed.
func (m *Mounted) watch(ctx context.Context, settle time.Duration) {
	w, err := watcher.New(watcher.Options{Settle: settle, Logger: m.log})
	if err != nil {
		m.log.Error("mount: no watcher; the mount shows changes made through it only", "err", err)
		return
	}
	if err := w.Add(m.dir, 3); err != nil {
		m.log.Error("mount: cannot watch the backpack", "err", err)
	}
	if err := w.Add(m.dev, 2); err != nil && !errors.Is(err, watcher.ErrOverlap) {
		m.log.Warn("mount: cannot watch the device directory", "err", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case err := <-done:
			if ctx.Err() == nil {
				m.log.Error("mount: watcher stopped", "err", err)
			}
			return
		case ch, ok := <-w.Changes():
			if !ok {
				<-done
				return
			}
			if !m.ignored(ch.Path) {
				m.srv.Changed()
			}
		}
	}
}

// ignored reports files whose changes the mount does not show: the
// state cache, artifacts and checkpoints in the backpack; the staged
// bundles and the agent's own files in the device directory.
func (m *Mounted) ignored(p string) bool {
	under := func(dir string) bool { return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) }
	if under(m.stage) || under(filepath.Join(m.dev, "agent")) {
		return true
	}
	rel, err := filepath.Rel(m.dir, p)
	if err != nil || !filepath.IsLocal(rel) {
		return false
	}
	rel = filepath.ToSlash(rel)
	return strings.HasPrefix(rel, "state/") || strings.HasPrefix(rel, "artifacts/") || strings.HasPrefix(rel, "checkpoints/")
}

// pollStatus refreshes status.json from a running agent every period.
// Without an agent, status.json changes with the backpack (each load
// builds it).
func (m *Mounted) pollStatus(ctx context.Context, uid string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if st, err := m.src.queryAgent(ctx, uid); err == nil {
			m.srv.SetStatus(statusJSON(st))
		}
	}
}

// followAgent shows a's status in the mount whenever a publishes one.
func (m *Mounted) followAgent(ctx context.Context, a *Agent) {
	ch := make(chan struct{}, 1)
	a.subMu.Lock()
	a.subs[ch] = struct{}{}
	a.subMu.Unlock()
	defer func() {
		a.subMu.Lock()
		delete(a.subs, ch)
		a.subMu.Unlock()
	}()
	for {
		if s := a.Status(); s != nil {
			m.srv.SetStatus(statusJSON(s))
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// startMount mounts the backpack at Options.Mount for Run. If that fails,
// the agent syncs without it: the reason is logged and kept among the
// status' recent errors. Only Run's goroutine calls it.
func (a *Agent) startMount(ctx context.Context) *Mounted {
	m, err := mount(ctx, MountOptions{Dir: a.dir, Mountpoint: a.opts.Mount, KeyFile: a.opts.KeyFile,
		Logger: a.log.With("part", "mount"), ReadMode: a.opts.MountReadMode, Settle: a.opts.Settle}, a)
	if err != nil {
		a.log.Error("mount unavailable; the agent syncs without it", "mountpoint", a.opts.Mount, "err", err)
		a.noteError("mount", err)
		a.publish(a.baseStatus())
		return nil
	}
	a.log.Info("mounted", "mountpoint", m.Mountpoint())
	return m
}

// stopMount unmounts what startMount mounted.
func (a *Agent) stopMount(m *Mounted) {
	if m == nil {
		return
	}
	if err := m.Unmount(); err != nil {
		a.log.Error("unmount", "mountpoint", m.Mountpoint(), "err", err)
	}
}
