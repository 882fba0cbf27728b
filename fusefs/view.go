package fusefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bplog "github.com/backpack-field/backpack/log"
)

// A View is one immutable picture of a backpack: the tree the mount shows,
// built from one snapshot of the store. Small files hold their bytes;
// events/events.ndjson and the per-actor timelines read the log file on
// disk, up to the size the snapshot saw. A View is safe for concurrent use
// and never changes; the server replaces it whole when the backpack
// changes, so a reader sees one snapshot or the next, never a mixture.
//
// Close releases the log file once no reader holds it any more.
type View struct {
	root  *entry
	log   *logFile // nil when the log could not be opened
	built time.Time
	// Info describes the snapshot the view shows.
	Info ViewInfo
}

// ViewInfo describes the snapshot a View shows.
type ViewInfo struct {
	UID        string
	Events     int    // events the reducer counted
	LogSize    int64  // bytes of events.ndjson the view serves
	MerkleRoot string // merkle_root.txt when the view was built
	Beliefs    int    // belief files under state/
	// Full is set when the view's state/ was built from every belief,
	// not updated from the previous view's (see Viewer).
	Full bool
}

// entry is one file or directory of a view. Immutable once built.
type entry struct {
	name     string
	dir      bool
	children []*entry // directories: sorted by name
	data     []byte   // files held in memory
	lr       *logRange
	perm     uint32 // permission bits
	mtime    time.Time
	// version changes whenever the bytes change: the cache invalidation
	// compares it between views.
	version uint64
	// ino is the inode number the kernel sees (0: derived from the
	// path). The log's depends on the file on disk, so that a replaced
	// log is a new inode with its own passthrough backing file.
	ino uint64
}

// inoAt is the inode number of e at path p.
func (e *entry) inoAt(p string) uint64 {
	if e.ino != 0 {
		return e.ino
	}
	return pathIno(p)
}

func (e *entry) size() int64 {
	if e.lr != nil {
		return e.lr.size
	}
	return int64(len(e.data))
}

// child returns the child named name, or nil.
func (e *entry) child(name string) *entry {
	i := sort.Search(len(e.children), func(i int) bool { return e.children[i].name >= name })
	if i < len(e.children) && e.children[i].name == name {
		return e.children[i]
	}
	return nil
}

// withChild returns a copy of the directory e with its child name
// replaced by c, added, or removed when c is nil. c's name must be name.
func (e *entry) withChild(name string, c *entry) *entry {
	i := sort.Search(len(e.children), func(i int) bool { return e.children[i].name >= name })
	found := i < len(e.children) && e.children[i].name == name
	d := *e
	switch {
	case c == nil && !found:
		return e
	case c == nil:
		d.children = slices.Delete(slices.Clone(e.children), i, i+1)
	case found:
		d.children = slices.Clone(e.children)
		d.children[i] = c
	default:
		d.children = slices.Insert(slices.Clone(e.children), i, c)
	}
	return &d
}

// readAt reads the file's bytes at off; io.EOF at or past the end.
func (e *entry) readAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("fusefs: negative offset")
	}
	if e.lr != nil {
		return e.lr.readAt(p, off)
	}
	if off >= int64(len(e.data)) {
		return 0, io.EOF
	}
	n := copy(p, e.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// logFile is the open events.ndjson a view reads, shared by the view and
// the file handles opened on it; the last release closes it.
//
// Open handles also hold a shared flock(2) on the file, from the first
// open to the last release: a writer rewrites the log's tail in place only
// when it can take the exclusive lock at once (docs/FORMAT.md, "Rewriting
// the log"), so bytes a handle may read never change under it; with
// readers holding it, the writer replaces the whole file instead (a new
// inode: those readers keep the old one).
type logFile struct {
	f    *os.File
	refs atomic.Int64

	mu    sync.Mutex
	opens int
	// size and end are the view's length of the file and its last bytes
	// (up to endCheck): the first open checks that they are still there,
	// since a tail rewritten in place while no handle was open leaves the
	// view stale.
	size int64
	end  []byte
}

// endCheck is how many of the log's last bytes a first open compares.
const endCheck = 512

// errRewritten: the log file was rewritten in place after the view was
// built; a new view must be built before it is read.
var errRewritten = errors.New("fusefs: events.ndjson was rewritten since the view was built")

// lockWait bounds how long an open waits for a writer's in-place rewrite.
const lockWait = 30 * time.Second

func newLogFile(f *os.File) *logFile {
	l := &logFile{f: f}
	l.refs.Store(1)
	return l
}

// acquire takes a reference; false when the file is already closed.
func (l *logFile) acquire() bool {
	for {
		r := l.refs.Load()
		if r <= 0 {
			return false
		}
		if l.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// sizeIs reports whether the file on disk is size bytes long now.
func (l *logFile) sizeIs(size int64) bool {
	fi, err := l.f.Stat()
	return err == nil && fi.Size() == size
}

func (l *logFile) release() {
	if l.refs.Add(-1) == 0 {
		l.f.Close()
	}
}

// setEnd records the view's length of the file and reads its last bytes.
func (l *logFile) setEnd(size int64) error {
	n := min(size, endCheck)
	end := make([]byte, n)
	if _, err := l.f.ReadAt(end, size-n); err != nil {
		return err
	}
	l.size, l.end = size, end
	return nil
}

// open takes a reference for a file handle (false: the file is closed)
// and, for the first handle, the shared lock, after which it checks that
// the file still ends as the view saw it (errRewritten if not; the
// reference is given back on any error).
func (l *logFile) open(ctx context.Context) (bool, error) {
	if !l.acquire() {
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opens == 0 {
		if err := bplog.LockShared(ctx, l.f, lockWait); err != nil {
			l.release()
			return true, err
		}
		if !l.endsAsSeen() {
			bplog.Unlock(l.f)
			l.release()
			return true, errRewritten
		}
	}
	l.opens++
	return true, nil
}

// close gives back what open took.
func (l *logFile) close() {
	l.mu.Lock()
	l.opens--
	if l.opens == 0 {
		bplog.Unlock(l.f)
	}
	l.mu.Unlock()
	l.release()
}

// endsAsSeen reports whether the file still holds the view's last bytes
// where the view saw them.
func (l *logFile) endsAsSeen() bool {
	if l.end == nil {
		return true
	}
	got := make([]byte, len(l.end))
	_, err := l.f.ReadAt(got, l.size-int64(len(got)))
	return err == nil && bytes.Equal(got, l.end)
}

// logRange is a file whose bytes come from the log: the first size bytes
// (segs nil), or the concatenation of segments (a timeline).
type logRange struct {
	f    *logFile
	size int64
	segs []segment
}

// segment is a run of log bytes at off, n long, that starts at pos in the
// file made of the segments.
type segment struct {
	off, pos int64
	n        int64
}

func (r *logRange) readAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	if int64(len(p)) > r.size-off {
		p = p[:r.size-off]
	}
	if r.segs == nil {
		n, err := r.f.f.ReadAt(p, off)
		if err == nil && off+int64(n) == r.size {
			err = io.EOF
		}
		return n, err
	}
	i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].pos+r.segs[i].n > off })
	done := 0
	for ; i < len(r.segs) && done < len(p); i++ {
		s := r.segs[i]
		in := off + int64(done) - s.pos
		want := min(int64(len(p)-done), s.n-in)
		n, err := r.f.f.ReadAt(p[done:done+int(want)], s.off+in)
		done += n
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the log shrank under us
			}
			return done, err
		}
	}
	if off+int64(done) == r.size {
		return done, io.EOF
	}
	return done, nil
}

// find returns the entry at the slash-separated path p ("" or "." is the
// root), or nil.
func (v *View) find(p string) *entry {
	e := v.root
	if p == "" || p == "." {
		return e
	}
	for name := range strings.SplitSeq(p, "/") {
		if !e.dir {
			return nil
		}
		if e = e.child(name); e == nil {
			return nil
		}
	}
	return e
}

// Close releases the view's hold on the log file; readers that opened it
// keep it until they close. Close the view when no longer needed.
func (v *View) Close() {
	if v.log != nil {
		v.log.release()
	}
}

// FS returns the view as an fs.FS (for testing/fstest and for tools that
// want the tree without a mount). The View must stay open while it is used.
func (v *View) FS() fs.FS { return viewFS{v} }

type viewFS struct{ v *View }

func (f viewFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	e := f.v.find(name)
	if e == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &viewFile{e: e, name: name}, nil
}

// viewFile is an open entry of a viewFS.
type viewFile struct {
	e    *entry
	name string
	off  int64
	dirs int // ReadDir position
}

func (f *viewFile) Stat() (fs.FileInfo, error) { return entryInfo{f.e}, nil }
func (f *viewFile) Close() error               { return nil }

func (f *viewFile) Read(p []byte) (int, error) {
	if f.e.dir {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errors.New("is a directory")}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.e.readAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *viewFile) ReadAt(p []byte, off int64) (int, error) {
	if f.e.dir {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errors.New("is a directory")}
	}
	return f.e.readAt(p, off)
}

func (f *viewFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.e.size()
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

func (f *viewFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !f.e.dir {
		return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: errors.New("not a directory")}
	}
	rest := f.e.children[f.dirs:]
	if n > 0 && len(rest) > n {
		rest = rest[:n]
	}
	out := make([]fs.DirEntry, len(rest))
	for i, c := range rest {
		out[i] = fs.FileInfoToDirEntry(entryInfo{c})
	}
	f.dirs += len(rest)
	if n > 0 && len(out) == 0 {
		return nil, io.EOF
	}
	return out, nil
}

// entryInfo is an entry's fs.FileInfo.
type entryInfo struct{ e *entry }

func (i entryInfo) Name() string {
	if i.e.name == "" {
		return "."
	}
	return i.e.name
}
func (i entryInfo) Size() int64 {
	if i.e.dir {
		return 0
	}
	return i.e.size()
}
func (i entryInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.e.perm)
	if i.e.dir {
		m |= fs.ModeDir
	}
	return m
}
func (i entryInfo) ModTime() time.Time { return i.e.mtime }
func (i entryInfo) IsDir() bool        { return i.e.dir }
func (i entryInfo) Sys() any           { return nil }

// treeBuilder assembles a view's tree; freeze turns it into entries.
type treeBuilder struct {
	name  string
	perm  uint32
	mtime time.Time
	dirs  map[string]*treeBuilder
	files map[string]*entry
}

func newTree(name string, perm uint32, mtime time.Time) *treeBuilder {
	return &treeBuilder{name: name, perm: perm, mtime: mtime, dirs: map[string]*treeBuilder{}, files: map[string]*entry{}}
}

// mkdir returns the directory at the slash path p below t, making it
// (with t's permissions) as needed.
func (t *treeBuilder) mkdir(p string) *treeBuilder {
	d := t
	if p == "" {
		return d
	}
	for name := range strings.SplitSeq(p, "/") {
		c, ok := d.dirs[name]
		if !ok {
			c = newTree(name, t.perm, t.mtime)
			d.dirs[name] = c
		}
		d = c
	}
	return d
}

// add puts a file at the slash path p. A later file at the same path
// replaces an earlier one.
func (t *treeBuilder) add(p string, e *entry) {
	dir, name := path.Split(p)
	e.name = name
	t.mkdir(strings.TrimSuffix(dir, "/")).files[name] = e
}

func (t *treeBuilder) freeze() *entry {
	e := &entry{name: t.name, dir: true, perm: t.perm, mtime: t.mtime}
	e.children = make([]*entry, 0, len(t.dirs)+len(t.files))
	for name, d := range t.dirs {
		if _, clash := t.files[name]; clash {
			continue // a file and a directory of one name: the file wins
		}
		e.children = append(e.children, d.freeze())
	}
	for _, f := range t.files {
		e.children = append(e.children, f)
	}
	sort.Slice(e.children, func(i, j int) bool { return e.children[i].name < e.children[j].name })
	return e
}
