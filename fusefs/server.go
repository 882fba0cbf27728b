package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Options configures Mount.
type Options struct {
	// Dir is the backpack. The mount reads its log and its own files
	// (never writing them); everything else comes from Source.
	Dir        string
	Mountpoint string // an existing empty directory
	Source     Source
	// StageDir is where bundles written into inbox/ wait for their
	// import: a private directory outside the backpack, created when
	// needed (default: a directory under os.TempDir).
	StageDir string
	Logger   *slog.Logger // default: discard
	// ReadMode is how events.ndjson is read through the mount (default
	// ReadPassthrough); docs/BENCHMARKS.md compares them.
	ReadMode ReadMode
	// Debug logs every FUSE request (to Logger, at debug level).
	Debug bool
	// OnPanic, if set, is called with the value of a panic in a FUSE
	// handler (tests fail on it); the request fails with EIO.
	OnPanic func(any)
}

// ReadMode says how reads of events.ndjson reach the log file.
type ReadMode string

// Read modes. In every mode a read returns the bytes of the view's
// snapshot, with one exception in ReadPassthrough, documented there.
const (
	// ReadPassthrough (the default) lets the kernel read the log file
	// itself (FUSE passthrough: Linux 6.9 or later, as root), at the
	// speed of the disk's page cache. An open gets it only while the file
	// on disk is exactly the view's log (same file, same size); otherwise
	// (lines were appended and the view is not rebuilt yet, or a torn
	// tail waits for repair) it reads the view's bytes through the server
	// with direct I/O. A read that runs while another process appends
	// can see the appended bytes, possibly part of a line: the file as on
	// disk at that moment. A replaced log (a merge rewrote it) is a new
	// inode, so opens never mix old and new files. Without kernel support
	// it behaves as ReadCache.
	ReadPassthrough ReadMode = ""
	// ReadCache keeps the kernel's pages between opens
	// (FOPEN_KEEP_CACHE); they are invalidated when the log changes.
	// Reads never go past the view's snapshot.
	ReadCache ReadMode = "cache"
	// ReadPlain drops the kernel's pages at each open.
	ReadPlain ReadMode = "plain"
	// ReadDirect bypasses the page cache: one FUSE request per read
	// call (up to 1 MiB) instead of 128 KiB readahead requests.
	ReadDirect ReadMode = "direct"
)

// ParseReadMode parses a --read-mode value: passthrough, cache, plain or
// direct.
func ParseReadMode(s string) (ReadMode, error) {
	switch m := ReadMode(s); m {
	case "passthrough":
		return ReadPassthrough, nil
	case ReadCache, ReadPlain, ReadDirect:
		return m, nil
	}
	return "", fmt.Errorf("fusefs: unknown read mode %q (passthrough, cache, plain or direct)", s)
}

// ErrNoFUSE means the kernel's FUSE cannot be used here.
var ErrNoFUSE = errors.New("fusefs: FUSE is not available")

// ErrMounted means the mount point is already in use.
var ErrMounted = errors.New("fusefs: something is already mounted there")

// Server is a mounted backpack. Build it with Mount; stop it with Unmount
// (or let Serve do it when its context ends).
type Server struct {
	opts   Options
	log    *slog.Logger
	fuse   *fuse.Server
	view   atomic.Pointer[View]
	sess   *session
	b      *builder // only used by rebuildLoop (and Mount before it starts)
	reqs   chan chan error
	notify chan struct{}

	// writeMu serializes writes through the mount.
	writeMu sync.Mutex

	// statusMu guards newStatus: status.json's next content, handed to
	// rebuildLoop (woken through statusCh).
	statusMu  sync.Mutex
	newStatus []byte
	statusCh  chan struct{}

	// namesMu guards staleNames: entries of drop directories the kernel
	// must forget, handed to the invalidation goroutine.
	namesMu    sync.Mutex
	staleNames map[string][]string

	stop     context.CancelFunc
	wg       sync.WaitGroup
	served   chan struct{} // closed when the FUSE server stopped
	unmount  sync.Once
	unmErr   error
	stopOnce sync.Once
}

func (s *Server) current() *View { return s.view.Load() }

// Mountpoint returns where the backpack is mounted.
func (s *Server) Mountpoint() string { return s.opts.Mountpoint }

// Mount builds the first view of the backpack in opts.Dir from
// opts.Source, mounts it on opts.Mountpoint and serves it until Unmount.
// A stale mount left there by a crash is cleaned first. Mount fails with
// ErrNoFUSE when the kernel's FUSE cannot be used (no /dev/fuse, no
// permission, no fusermount3 for a user other than root), before it
// touches the mount point or the source.
//
// The mount shows changes made through it at once; changes made by
// others show after Changed (the caller watches the backpack).
func Mount(ctx context.Context, opts Options) (*Server, error) {
	if err := checkFUSE(); err != nil {
		return nil, err
	}
	if opts.Source == nil {
		return nil, errors.New("fusefs: Mount needs a Source")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var err error
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	if opts.Mountpoint, err = filepath.Abs(opts.Mountpoint); err != nil {
		return nil, err
	}
	if opts.StageDir == "" {
		opts.StageDir = filepath.Join(os.TempDir(), fmt.Sprintf("backpack-mount-inbox-%d", os.Getpid()))
	}
	if err := prepareMountpoint(opts.Mountpoint, opts.Logger); err != nil {
		return nil, err
	}
	s := &Server{
		opts: opts, log: opts.Logger,
		b:          &builder{dir: opts.Dir, src: opts.Source, log: opts.Logger},
		reqs:       make(chan chan error, 16),
		notify:     make(chan struct{}, 1),
		statusCh:   make(chan struct{}, 1),
		staleNames: map[string][]string{},
		served:     make(chan struct{}),
	}
	s.sess = newSession(s, opts.StageDir)
	v, err := s.b.build(ctx)
	if err != nil {
		return nil, err
	}
	s.view.Store(v)

	sec := attrTimeout
	fsOpts := &fs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{
			FsName:      opts.Dir,
			Name:        "backpack",
			DirectMount: true,
			// Large reads and writes, but one page short of 1 MiB so
			// that a read's reply fits the 1 MiB pipe go-fuse splices
			// through.
			MaxWrite:      1<<20 - 4096,
			DisableXAttrs: true,
			Debug:         opts.Debug,
			PanicHandler: func(p any) fuse.Status {
				s.log.Error("mount: panic in a FUSE handler", "panic", p)
				if opts.OnPanic != nil {
					opts.OnPanic(p)
				}
				return fuse.EIO
			},
		},
	}
	// go-fuse's own messages (and, with Debug, every request) go to the
	// logger at debug level.
	fsOpts.MountOptions.Logger = slogLogger(s.log)
	root := &node{s: s}
	raw := fs.NewNodeFS(root, fsOpts)
	srv, err := fuse.NewServer(raw, opts.Mountpoint, &fsOpts.MountOptions)
	if err != nil {
		v.Close()
		return nil, mountError(err)
	}
	s.fuse = srv
	go func() {
		srv.Serve()
		close(s.served)
	}()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		v.Close()
		return nil, mountError(err)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.start(bg, root)
	s.log.Info("mount: serving", "backpack", opts.Dir, "mountpoint", opts.Mountpoint)
	return s, nil
}

// start runs the goroutines the server owns: views and invalidation.
func (s *Server) start(ctx context.Context, root *node) {
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.rebuildLoop(ctx) }()
	go func() { defer s.wg.Done(); s.notifyLoop(ctx, root) }()
}

// Serve waits until ctx ends, then unmounts, or until the file system is
// unmounted from outside (fusermount3 -u). It returns Unmount's error.
func (s *Server) Serve(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return s.Unmount()
	case <-s.served:
		s.shutdown()
		return nil
	}
}

// Wait blocks until the file system is unmounted.
func (s *Server) Wait() {
	<-s.served
	s.shutdown()
}

// Unmount unmounts the file system, retrying while files are open
// (EBUSY), then lazily (the kernel detaches it and finishes when the last
// file closes), and stops the server's goroutines.
func (s *Server) Unmount() error {
	s.unmount.Do(func() {
		var err error
		for i := 0; i < 5; i++ {
			if err = s.fuse.Unmount(); err == nil {
				break
			}
			select {
			case <-s.served:
				err = nil
			case <-time.After(200 * time.Millisecond):
				continue
			}
			break
		}
		if err != nil {
			s.log.Warn("mount: busy; detaching it (it goes when the last open file closes)", "err", err)
			err = lazyUnmount(s.opts.Mountpoint)
		}
		if err == nil {
			select {
			case <-s.served:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("fusefs: the FUSE server did not stop after unmounting %s", s.opts.Mountpoint)
			}
		}
		s.unmErr = err
		s.shutdown()
	})
	return s.unmErr
}

// shutdown stops the goroutines and releases the view.
func (s *Server) shutdown() {
	s.stopOnce.Do(func() {
		if s.stop != nil {
			s.stop()
		}
		s.wg.Wait()
		if v := s.view.Load(); v != nil {
			v.Close()
		}
		os.RemoveAll(s.sess.stage)
		s.log.Info("mount: stopped", "mountpoint", s.opts.Mountpoint)
	})
}

// Refresh rebuilds the view now and waits for it.
func (s *Server) Refresh(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.reqs <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Changed asks for a new view without waiting: the backpack changed.
// Calls made while a view is being built are served by one more build.
func (s *Server) Changed() {
	select {
	case s.reqs <- nil:
	default: // one is queued already
	}
}

// SetStatus replaces status.json (nil removes it). It does not wait.
func (s *Server) SetStatus(data []byte) {
	s.statusMu.Lock()
	s.newStatus = data
	s.statusMu.Unlock()
	select {
	case s.statusCh <- struct{}{}:
	default:
	}
}

// rebuildLoop builds views and publishes them. It owns s.b.
func (s *Server) rebuildLoop(ctx context.Context) {
	for {
		var waiters []chan error
		select {
		case <-ctx.Done():
			return
		case <-s.statusCh:
			s.statusMu.Lock()
			data := s.newStatus
			s.statusMu.Unlock()
			s.replaceStatus(data)
			continue
		case w := <-s.reqs:
			waiters = append(waiters, w)
		}
		// Requests that queued meanwhile are served by this build.
	drain:
		for {
			select {
			case w := <-s.reqs:
				waiters = append(waiters, w)
			default:
				break drain
			}
		}
		err := s.rebuild(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("mount: view not rebuilt", "err", err)
		}
		for _, w := range waiters {
			if w != nil {
				w <- err
			}
		}
	}
}

func (s *Server) rebuild(ctx context.Context) error {
	var v *View
	var err error
	for try := 0; try < 3; try++ {
		if v, err = s.b.build(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	s.publish(v)
	return nil
}

// publish swaps in a new view and has the kernel's caches invalidated.
func (s *Server) publish(v *View) {
	old := s.view.Swap(v)
	if old != nil {
		old.Close()
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// replaceStatus publishes the current view with status.json replaced.
// Only rebuildLoop calls it.
func (s *Server) replaceStatus(data []byte) {
	if string(data) == string(s.b.status) {
		return
	}
	s.b.status = data
	v := s.current()
	var nv *View
	var ok bool
	if data == nil {
		nv, ok = v.withFile(fileStatus, nil)
	} else {
		nv, ok = v.withFile(fileStatus, fileEntry(data, time.Now()))
	}
	if ok {
		s.publish(nv)
	}
}

// withFile returns a copy of v with the top-level file name replaced
// (removed when e is nil); false when v was closed meanwhile.
func (v *View) withFile(name string, e *entry) (*View, bool) {
	if v.log != nil && !v.log.acquire() {
		return nil, false
	}
	if e != nil {
		e.name = name
	}
	nv := *v
	nv.root = v.root.withChild(name, e)
	return &nv, true
}

// invalidateNames has the kernel forget names in a drop directory.
func (s *Server) invalidateNames(dir string, names ...string) {
	s.namesMu.Lock()
	s.staleNames[dir] = append(s.staleNames[dir], names...)
	s.namesMu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// notifyLoop invalidates the kernel's caches for what changed between the
// view it last handled and the current one. It runs apart from FUSE
// handlers and holds none of the server's locks while it calls the
// kernel: go-fuse's notify calls deadlock otherwise.
func (s *Server) notifyLoop(ctx context.Context, root *node) {
	last := s.current()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		s.namesMu.Lock()
		names := s.staleNames
		s.staleNames = map[string][]string{}
		s.namesMu.Unlock()
		for dir, list := range names {
			d := root.GetChild(dir)
			if d == nil {
				continue
			}
			for _, name := range list {
				if ch := d.GetChild(name); ch != nil {
					ch.NotifyContent(0, 0)
				}
				d.NotifyEntry(name)
			}
		}
		cur := s.current()
		if cur != last {
			invalidate(&root.Inode, "", last.root, cur.root)
			last = cur
		}
	}
}

// invalidate walks the inodes the kernel knows below ino (at path p) and
// invalidates those whose entry changed between the views.
func invalidate(ino *fs.Inode, p string, old, cur *entry) {
	if old == cur {
		return // a subtree the new view shares with the old one
	}
	changed := false
	for name, ch := range ino.Children() {
		cp := join(p, name)
		var o, c *entry
		if old != nil && old.dir {
			o = old.child(name)
		}
		if cur != nil && cur.dir {
			c = cur.child(name)
		}
		if dropDir(p) {
			continue // drop directories' files are invalidated by name
		}
		switch {
		case c == nil:
			if o != nil {
				ino.NotifyDelete(name, ch)
				changed = true
			}
		case o != nil && o.inoAt(cp) != c.inoAt(cp):
			// Another inode now (a replaced log): the kernel looks the
			// name up again; open files keep the old one.
			ino.NotifyEntry(name)
		case c.dir:
			invalidate(ch, cp, o, c)
		case o == nil || o.version != c.version:
			ch.NotifyContent(0, 0)
		}
	}
	if old != nil && cur != nil && len(old.children) != len(cur.children) {
		changed = true
	}
	if changed {
		ino.NotifyContent(0, 0) // the directory's attributes
	}
}

// fuseDevice is the kernel's FUSE device (a variable for tests).
var fuseDevice = "/dev/fuse"

// checkFUSE says clearly why FUSE cannot be used, before go-fuse tries.
func checkFUSE() error {
	f, err := os.OpenFile(fuseDevice, os.O_RDWR, 0)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%w: /dev/fuse is missing (load the fuse kernel module: modprobe fuse; in a container, pass --device /dev/fuse)", ErrNoFUSE)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("%w: no permission to open /dev/fuse (run as root, or add your user to the group that owns it)", ErrNoFUSE)
		}
		return fmt.Errorf("%w: %v", ErrNoFUSE, err)
	}
	f.Close()
	if os.Geteuid() != 0 && fusermount() == "" {
		return fmt.Errorf("%w: fusermount3 is not installed (install the fuse3 package) and only root can mount without it", ErrNoFUSE)
	}
	return nil
}

// mountError explains a failed mount.
func mountError(err error) error {
	msg := err.Error()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || strings.Contains(msg, "permission") || strings.Contains(msg, "not permitted") {
		return fmt.Errorf("%w: mount refused: %v (run as root, or install fuse3's setuid fusermount3)", ErrNoFUSE, err)
	}
	return fmt.Errorf("fusefs: mount: %w", err)
}

// slogLogger adapts a slog.Logger for go-fuse's debug output.
func slogLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("fuse: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
