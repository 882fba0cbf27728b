package fusefs

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is one inode of the mount. It holds only its path: every operation
// resolves the path in the current view (or, under new/ and inbox/, in the
// session), so a node stays valid across views and shows the newest one.
type node struct {
	fs.Inode
	s    *Server
	path string // slash path from the root; "" is the root
	ino  uint64 // the inode number it was made with
}

var (
	_ fs.NodeLookuper  = (*node)(nil)
	_ fs.NodeReaddirer = (*node)(nil)
	_ fs.NodeGetattrer = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeUnlinker  = (*node)(nil)
	_ fs.NodeStatfser  = (*node)(nil)
	_ fs.NodeAccesser  = (*node)(nil)
)

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// pathIno derives a stable inode number from a path, so that the kernel
// sees the same inode for a path in every view. Numbers lie in [2^62,
// 2^63): above the root (1) and below go-fuse's automatic numbers.
func pathIno(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	return h.Sum64()&(1<<62-1) | 1<<62
}

// dropDir reports whether p is one of the directories users write into.
func dropDir(p string) bool { return p == dirNew || p == dirInbox }

func fillEntryAttr(e *entry, a *fuse.Attr) {
	if e.dir {
		a.Mode = syscall.S_IFDIR | e.perm
		a.Nlink = 2
	} else {
		a.Mode = syscall.S_IFREG | e.perm
		a.Nlink = 1
		a.Size = uint64(e.size())
		a.Blocks = (a.Size + 511) / 512
	}
	a.SetTimes(nil, &e.mtime, &e.mtime)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p := join(n.path, name)
	if dropDir(n.path) {
		if sf, ok := n.s.sess.stat(n.path, name); ok {
			sf.fill(&out.Attr)
			out.SetEntryTimeout(0)
			out.SetAttrTimeout(0)
			return n.NewInode(ctx, &node{s: n.s, path: p}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: pathIno(p)}), 0
		}
		return nil, syscall.ENOENT
	}
	e := n.s.current().find(p)
	if e == nil {
		return nil, syscall.ENOENT
	}
	fillEntryAttr(e, &out.Attr)
	mode := uint32(syscall.S_IFREG)
	if e.dir {
		mode = syscall.S_IFDIR
	}
	ino := e.inoAt(p)
	return n.NewInode(ctx, &node{s: n.s, path: p, ino: ino}, fs.StableAttr{Mode: mode, Ino: ino}), 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	e := n.s.current().find(n.path)
	if e == nil || !e.dir {
		return nil, syscall.ENOENT
	}
	list := make([]fuse.DirEntry, 0, len(e.children))
	for _, c := range e.children {
		mode := uint32(syscall.S_IFREG)
		if c.dir {
			mode = syscall.S_IFDIR
		}
		list = append(list, fuse.DirEntry{Name: c.name, Mode: mode, Ino: c.inoAt(join(n.path, c.name))})
	}
	if dropDir(n.path) {
		for _, name := range n.s.sess.names(n.path) {
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: pathIno(join(n.path, name))})
		}
	}
	return fs.NewListDirStream(list), 0
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if dir, name, ok := n.sessionName(); ok {
		sf, ok := n.s.sess.stat(dir, name)
		if !ok {
			return syscall.ENOENT
		}
		sf.fill(&out.Attr)
		out.SetTimeout(0)
		return 0
	}
	e := n.s.current().find(n.path)
	if e == nil {
		return syscall.ENOENT
	}
	fillEntryAttr(e, &out.Attr)
	return 0
}

// sessionName splits the path of a file in new/ or inbox/.
func (n *node) sessionName() (dir, name string, ok bool) {
	for _, d := range []string{dirNew, dirInbox} {
		if len(n.path) > len(d)+1 && n.path[:len(d)+1] == d+"/" {
			return d, n.path[len(d)+1:], true
		}
	}
	return "", "", false
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if dir, name, ok := n.sessionName(); ok {
		if sz, ok := in.GetSize(); ok {
			if errno := n.s.sess.truncate(dir, name, int64(sz)); errno != 0 {
				return errno
			}
		}
		// Modes and times (cp -p, touch) are accepted and not kept.
		return n.Getattr(ctx, f, out)
	}
	if n.path == eventsPath {
		if _, ok := in.GetSize(); ok {
			n.s.log.Warn("mount: refused to truncate events.ndjson; only appends are accepted")
			return syscall.EPERM
		}
		return n.Getattr(ctx, f, out)
	}
	return syscall.EROFS
}

func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	if mask&2 == 0 { // W_OK
		return 0
	}
	if n.path == eventsPath || dropDir(n.path) {
		return 0
	}
	if _, _, ok := n.sessionName(); ok {
		return 0
	}
	return syscall.EROFS
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.s.opts.Dir, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// eventsPath is the log, the one backpack file that takes writes.
const eventsPath = "events/events.ndjson"

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	acc := flags & syscall.O_ACCMODE
	if dir, name, ok := n.sessionName(); ok {
		return n.s.sess.open(dir, name, flags)
	}
	if n.path == eventsPath {
		if flags&syscall.O_TRUNC != 0 {
			n.s.log.Warn("mount: refused to open events.ndjson with O_TRUNC; append with >> instead")
			return nil, 0, syscall.EPERM
		}
		if acc == syscall.O_RDWR {
			// Appending needs only O_WRONLY. A file open for reading and
			// writing could be mapped shared and written through the
			// mapping, which in passthrough mode reaches the file on
			// disk: refused in every mode.
			n.s.log.Warn("mount: refused to open events.ndjson for reading and writing; open it write-only (>>) to append")
			return nil, 0, syscall.EPERM
		}
		if acc != syscall.O_RDONLY {
			// Writes are appends whatever offset the kernel computes
			// (its idea of the size goes stale through FUSE), so no
			// page cache: direct I/O.
			return n.s.openAppend()
		}
		return n.s.openLog(ctx, n.ino)
	}
	if acc != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	for {
		v := n.s.current()
		e := v.find(n.path)
		if e == nil {
			return nil, 0, syscall.ENOENT
		}
		if e.dir {
			return nil, 0, syscall.EISDIR
		}
		if e.lr != nil {
			if ok, errno := n.s.openLogFile(ctx, e.lr.f); errno != 0 {
				return nil, 0, errno
			} else if !ok {
				continue // the view was replaced and closed meanwhile
			}
		}
		// Derived files change with every snapshot: each open reads the
		// view it opened on, without the kernel's page cache.
		return &entryHandle{e: e}, fuse.FOPEN_DIRECT_IO, 0
	}
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !dropDir(n.path) {
		return nil, nil, 0, syscall.EROFS
	}
	fh, errno := n.s.sess.create(n.path, name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	p := join(n.path, name)
	if sf, ok := n.s.sess.stat(n.path, name); ok {
		sf.fill(&out.Attr)
	}
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	ch := n.NewInode(ctx, &node{s: n.s, path: p}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: pathIno(p)})
	return ch, fh, fuse.FOPEN_DIRECT_IO, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if !dropDir(n.path) {
		return syscall.EROFS
	}
	return n.s.sess.remove(n.path, name)
}

// entryHandle reads one file of one view.
type entryHandle struct {
	e *entry
}

var (
	_ fs.FileReader   = (*entryHandle)(nil)
	_ fs.FileReleaser = (*entryHandle)(nil)
)

func (h *entryHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.e.readAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *entryHandle) Release(ctx context.Context) syscall.Errno {
	if h.e.lr != nil {
		h.e.lr.f.close()
	}
	return 0
}

// openLogFile opens lf, a view's log file, for a new handle: false when
// the view was replaced meanwhile (look it up again). A file rewritten in
// place since its view was built has a new view built first, and the
// caller looks again.
func (s *Server) openLogFile(ctx context.Context, lf *logFile) (bool, syscall.Errno) {
	ok, err := lf.open(ctx)
	switch {
	case !ok:
		return false, 0
	case err == nil:
		return true, 0
	case errors.Is(err, errRewritten):
		rctx, cancel := context.WithTimeout(ctx, lockWait)
		defer cancel()
		if err := s.Refresh(rctx); err != nil {
			s.log.Warn("mount: events.ndjson was rewritten and no new view could be built", "err", err)
			return false, syscall.EAGAIN
		}
		return false, 0
	default:
		s.log.Warn("mount: cannot open events.ndjson", "err", err)
		return false, syscall.EAGAIN
	}
}

// logHandle reads events.ndjson as one view saw it, straight from the
// file (spliced to the kernel when it can be).
type logHandle struct {
	lf   *logFile
	size int64
}

var (
	_ fs.FileReader   = (*logHandle)(nil)
	_ fs.FileReleaser = (*logHandle)(nil)
)

func (h *logHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= h.size {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), h.size-off)
	return fuse.ReadResultFd(h.lf.f.Fd(), off, int(n)), 0
}

func (h *logHandle) Release(ctx context.Context) syscall.Errno {
	h.lf.close()
	return 0
}

// In ReadPassthrough mode every handle of the log offers a backing file
// (the view's log): the kernel demands that all opens of an inode with a
// backing file attached are passthrough opens, and go-fuse counts an
// inode's passthrough opens right only if every open is one. Handles
// that must not read the file directly (reads bounded by an older view,
// appends) are opened with FOPEN_DIRECT_IO as well, which takes
// precedence over passthrough: their reads and writes still come to the
// server. Without passthrough (another user than root, a kernel before
// 6.9) go-fuse ignores the backing file and the flags apply as given.

// passHandle is a logHandle that offers the view's log as its backing
// file.
type passHandle struct{ logHandle }

var _ fs.FilePassthroughFder = (*passHandle)(nil)

func (h *passHandle) PassthroughFd() (int, bool) { return int(h.lf.f.Fd()), true }

// passAppendHandle is an appendHandle that offers a view's log as its
// backing file; it holds that file until released.
type passAppendHandle struct {
	*appendHandle
	lf *logFile
}

var (
	_ fs.FilePassthroughFder = (*passAppendHandle)(nil)
	_ fs.FileReleaser        = (*passAppendHandle)(nil)
)

func (h *passAppendHandle) PassthroughFd() (int, bool) { return int(h.lf.f.Fd()), true }

func (h *passAppendHandle) Release(ctx context.Context) syscall.Errno {
	h.lf.release()
	return 0
}

// openAppend opens events.ndjson for appending.
func (s *Server) openAppend() (fs.FileHandle, uint32, syscall.Errno) {
	h := &appendHandle{s: s}
	if s.opts.ReadMode != ReadPassthrough {
		return h, fuse.FOPEN_DIRECT_IO, 0
	}
	for {
		e := s.current().find(eventsPath)
		if e == nil || e.lr == nil {
			return nil, 0, syscall.ENOENT
		}
		if e.lr.f.acquire() {
			return &passAppendHandle{appendHandle: h, lf: e.lr.f}, fuse.FOPEN_DIRECT_IO, 0
		}
	}
}

// openLog opens events.ndjson for reading through the inode numbered
// ino.
func (s *Server) openLog(ctx context.Context, ino uint64) (fs.FileHandle, uint32, syscall.Errno) {
	for {
		v := s.current()
		e := v.find(eventsPath)
		if e == nil || e.lr == nil {
			return nil, 0, syscall.ENOENT
		}
		if ok, errno := s.openLogFile(ctx, e.lr.f); errno != 0 {
			return nil, 0, errno
		} else if !ok {
			continue
		}
		h := logHandle{lf: e.lr.f, size: e.lr.size}
		switch s.opts.ReadMode {
		case ReadDirect:
			return &h, fuse.FOPEN_DIRECT_IO, 0
		case ReadPlain:
			return &h, 0, 0
		case ReadCache:
			return &h, fuse.FOPEN_KEEP_CACHE, 0
		}
		// Passthrough reads the file as it is on disk, unbounded: let the
		// kernel read it only while that is the view's log (the inode is
		// the view's file's, so a replaced log is another inode).
		// Otherwise (lines were appended and the view is not rebuilt yet)
		// the reads come here and stop at the view's size.
		if ino == e.ino && h.lf.sizeIs(e.lr.size) {
			return &passHandle{h}, fuse.FOPEN_KEEP_CACHE, 0
		}
		return &passHandle{h}, fuse.FOPEN_DIRECT_IO, 0
	}
}

// attrTimeout is how long the kernel may keep attributes and entries of
// the view; changes are also pushed by invalidation.
const attrTimeout = time.Second
