package fusefs

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Limits of files written into the drop directories.
const (
	maxNewFile   = 1 << 20   // new/NAME: a small JSON object
	maxInboxFile = 256 << 20 // inbox/NAME: a bundle (the bundle reader's default bound)
)

// session holds what users wrote into new/ and inbox/ during this mount:
// files being written, and the results of those processed. It lives in
// memory (and in a staging directory outside the backpack for bundles)
// and is not part of the backpack.
type session struct {
	s *Server
	// stage is where bundles being written are kept until they are
	// imported: a directory in the device's state directory.
	stage string

	// mu guards the fields below. It is never held while the store is
	// opened or written.
	mu    sync.Mutex
	files map[string]*sfile // by "new/NAME" or "inbox/NAME"
}

// sfile is a file in a drop directory: one being written (data or
// staged), or a result (done).
type sfile struct {
	data    []byte   // new/ files and results
	staged  *os.File // inbox/ files being written
	size    int64
	mtime   time.Time
	result  bool // a .done, .error or .result file
	claimed bool // being processed or processed: no more writes
}

func (f *sfile) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o644
	if f.result {
		a.Mode = syscall.S_IFREG | 0o444
	}
	a.Nlink = 1
	a.Size = uint64(f.size)
	a.Blocks = (a.Size + 511) / 512
	a.SetTimes(nil, &f.mtime, &f.mtime)
}

func newSession(s *Server, stage string) *session {
	return &session{s: s, stage: stage, files: map[string]*sfile{}}
}

// reservedName reports whether users may not create name in a drop
// directory: hidden and temporary names, and the names of results.
func reservedName(dir, name string) bool {
	if name == "" || strings.HasPrefix(name, ".") || len(name) > maxName {
		return true
	}
	if dir == dirNew {
		return strings.HasSuffix(name, suffixDone) || strings.HasSuffix(name, suffixError)
	}
	return strings.HasSuffix(name, suffixResult)
}

func (ss *session) stat(dir, name string) (sfile, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f, ok := ss.files[dir+"/"+name]
	if !ok {
		return sfile{}, false
	}
	return *f, true
}

func (ss *session) names(dir string) []string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []string
	for k := range ss.files {
		if d, name, _ := strings.Cut(k, "/"); d == dir {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (ss *session) create(dir, name string) (fs.FileHandle, syscall.Errno) {
	if reservedName(dir, name) {
		return nil, syscall.EPERM
	}
	f := &sfile{mtime: time.Now()}
	if dir == dirInbox {
		if err := os.MkdirAll(ss.stage, 0o700); err != nil {
			ss.s.log.Error("mount: staging directory", "err", err)
			return nil, syscall.EIO
		}
		tmp, err := os.CreateTemp(ss.stage, "inbox-*.part")
		if err != nil {
			ss.s.log.Error("mount: staging a bundle", "err", err)
			return nil, syscall.EIO
		}
		f.staged = tmp
	}
	key := dir + "/" + name
	ss.mu.Lock()
	old := ss.files[key]
	if old != nil && old.claimed && !old.result {
		ss.mu.Unlock()
		if f.staged != nil {
			discard(f.staged)
		}
		return nil, syscall.EBUSY // the previous file of this name is being processed
	}
	ss.files[key] = f
	ss.mu.Unlock()
	if old != nil && old.staged != nil {
		discard(old.staged)
	}
	return &dropHandle{ss: ss, dir: dir, name: name, f: f}, 0
}

// open opens an existing drop file: results for reading, files being
// written for more writing.
func (ss *session) open(dir, name string, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f, ok := ss.files[dir+"/"+name]
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return &dropReader{data: f.data}, fuse.FOPEN_DIRECT_IO, 0
	}
	if f.result || f.claimed {
		return nil, 0, syscall.EACCES
	}
	if flags&syscall.O_TRUNC != 0 {
		ss.truncateLocked(f, 0)
	}
	return &dropHandle{ss: ss, dir: dir, name: name, f: f}, fuse.FOPEN_DIRECT_IO, 0
}

func (ss *session) truncate(dir, name string, size int64) syscall.Errno {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f, ok := ss.files[dir+"/"+name]
	if !ok {
		return syscall.ENOENT
	}
	if f.result || f.claimed {
		return syscall.EACCES
	}
	return ss.truncateLocked(f, size)
}

func (ss *session) truncateLocked(f *sfile, size int64) syscall.Errno {
	if f.staged != nil {
		if size > maxInboxFile {
			return syscall.EFBIG
		}
		if err := f.staged.Truncate(size); err != nil {
			return syscall.EIO
		}
	} else {
		if size > maxNewFile {
			return syscall.EFBIG
		}
		if size <= int64(len(f.data)) {
			f.data = f.data[:size]
		} else {
			f.data = append(f.data, make([]byte, size-int64(len(f.data)))...)
		}
	}
	f.size = size
	f.mtime = time.Now()
	return 0
}

func (ss *session) remove(dir, name string) syscall.Errno {
	ss.mu.Lock()
	f, ok := ss.files[dir+"/"+name]
	if ok && f.claimed && !f.result {
		ss.mu.Unlock()
		return syscall.EBUSY
	}
	delete(ss.files, dir+"/"+name)
	ss.mu.Unlock()
	if !ok {
		return syscall.ENOENT
	}
	if f.staged != nil {
		discard(f.staged)
	}
	return 0
}

// finish replaces a processed file by its result file: the file goes, the
// result (name + suffix) appears. The kernel forgets both names (from
// the invalidation goroutine).
func (ss *session) finish(dir, name string, f *sfile, suffix string, result []byte) {
	ss.mu.Lock()
	if ss.files[dir+"/"+name] == f {
		delete(ss.files, dir+"/"+name)
	}
	ss.files[dir+"/"+name+suffix] = &sfile{data: result, size: int64(len(result)), mtime: time.Now(), result: true, claimed: true}
	ss.mu.Unlock()
	ss.s.invalidateNames(dir, name, name+suffix)
}

func discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// dropReader reads a drop file's bytes as they were at open.
type dropReader struct{ data []byte }

func (r *dropReader) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(r.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(r.data[off:min(int64(len(r.data)), off+int64(len(dest)))]), 0
}

// dropHandle writes a file into new/ or inbox/. The file is processed at
// the first close (Flush) after something was written, so that close
// reports the outcome, or at release if no close did.
type dropHandle struct {
	ss        *session
	dir, name string
	f         *sfile
	written   bool
}

var (
	_ fs.FileWriter   = (*dropHandle)(nil)
	_ fs.FileFlusher  = (*dropHandle)(nil)
	_ fs.FileReleaser = (*dropHandle)(nil)
	_ fs.FileReader   = (*dropHandle)(nil)
)

func (h *dropHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	ss := h.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := h.f
	if f.claimed {
		return 0, syscall.EBADF // already processed: write a new file
	}
	end := off + int64(len(data))
	if f.staged != nil {
		if end > maxInboxFile {
			return 0, syscall.EFBIG
		}
		if _, err := f.staged.WriteAt(data, off); err != nil {
			ss.s.log.Error("mount: staging a bundle", "err", err)
			return 0, syscall.EIO
		}
	} else {
		if end > maxNewFile {
			return 0, syscall.EFBIG
		}
		if end > int64(len(f.data)) {
			f.data = append(f.data, make([]byte, end-int64(len(f.data)))...)
		}
		copy(f.data[off:], data)
	}
	f.size = max(f.size, end)
	f.mtime = time.Now()
	h.written = true
	return uint32(len(data)), 0
}

func (h *dropHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.ss.mu.Lock()
	defer h.ss.mu.Unlock()
	f := h.f
	if f.staged != nil {
		n, _ := f.staged.ReadAt(dest, off)
		return fuse.ReadResultData(dest[:max(n, 0)]), 0
	}
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(f.data[off:min(int64(len(f.data)), off+int64(len(dest)))]), 0
}

func (h *dropHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.written {
		return 0
	}
	return h.process(ctx)
}

func (h *dropHandle) Release(ctx context.Context) syscall.Errno {
	h.ss.mu.Lock()
	pending := !h.f.claimed && h.ss.files[h.dir+"/"+h.name] == h.f
	h.ss.mu.Unlock()
	if pending && h.written {
		// No close reached us with the data (the writer died): process
		// it now; the result file says what came of it.
		h.process(context.Background())
	}
	return 0
}

// process claims the file and hands it to the store; it returns the
// errno close should report.
func (h *dropHandle) process(ctx context.Context) syscall.Errno {
	ss := h.ss
	ss.mu.Lock()
	f := h.f
	if f.claimed {
		ss.mu.Unlock()
		return 0
	}
	f.claimed = true
	data := slices.Clone(f.data)
	staged := f.staged
	ss.mu.Unlock()
	if h.dir == dirNew {
		return ss.s.recordNew(ctx, h.name, f, data)
	}
	defer discard(staged)
	if err := staged.Sync(); err != nil {
		ss.finish(h.dir, h.name, f, suffixResult, errorJSON(err))
		return syscall.EIO
	}
	return ss.s.importDropped(ctx, h.name, f, staged.Name())
}
