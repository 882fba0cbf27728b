package fusefs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	bplog "github.com/backpack-field/backpack/log"
)

// Permissions the mount shows.
const (
	permFile     = 0o444
	permDir      = 0o555
	permAppend   = 0o644 // events/events.ndjson: appends only
	permDropDir  = 0o755 // new/ and inbox/
	maxOwnFile   = 16 << 20
	maxOwnFiles  = 10000
	dirNew       = "new"
	dirInbox     = "inbox"
	dirState     = "state"
	dirTimeline  = "timeline"
	dirForks     = "forks"
	dirQuarant   = "quarantine"
	dirPending   = "pending"
	fileStatus   = "status.json"
	fileState    = "state/state.json"
	suffixResult = ".result"
	suffixDone   = ".done"
	suffixError  = ".error"
)

// The backpack's own files the mount shows byte for byte (the Provara
// layout), besides the log.
const (
	manifestFile    = "manifest.json"
	manifestSigFile = "manifest.sig"
	merkleRootFile  = "merkle_root.txt"
)

// builder makes views of one backpack. It keeps the log index between
// builds, so only the goroutine that builds views may use it.
type builder struct {
	dir string // the backpack
	src Source
	log *slog.Logger
	// status is status.json's content (nil: no such file).
	status []byte

	idx       *logIndex
	state     stateTree
	timelines timelines
}

// build loads the backpack from the source and makes a view of it.
func (b *builder) build(ctx context.Context) (*View, error) {
	var v *View
	err := b.src.Load(ctx, func(snap *Snapshot) error {
		var err error
		v, err = b.buildFrom(ctx, snap)
		return err
	})
	if err != nil {
		if v != nil {
			v.Close()
		}
		return nil, err
	}
	return v, nil
}

// buildFrom makes a view of snap.
func (b *builder) buildFrom(ctx context.Context, snap *Snapshot) (*View, error) {
	now := time.Now()
	if snap.Status != nil {
		b.status = snap.Status
	}
	f, err := os.Open(filepath.Join(b.dir, filepath.FromSlash(eventsPath)))
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() < snap.LogSize {
		f.Close()
		return nil, fmt.Errorf("events.ndjson changed while the view was built; retry")
	}
	lf := newLogFile(f)
	v := &View{log: lf, built: now}
	// Read under the readers' lock, so that no tail is rewritten in
	// place while the view indexes it (see logFile).
	if err := bplog.LockShared(ctx, f, lockWait); err != nil {
		v.Close()
		return nil, err
	}
	defer bplog.Unlock(f)
	x, grown, err := b.idx.update(ctx, f, snap.LogSize)
	if err != nil {
		v.Close()
		b.idx = nil
		return nil, fmt.Errorf("index events.ndjson: %w", err)
	}
	b.idx = x
	info := ViewInfo{UID: snap.UID, Events: snap.Events, LogSize: snap.LogSize, MerkleRoot: snap.MerkleRoot}
	if x.size < snap.LogSize {
		info.LogSize = x.size // an unfinished last line is not shown
	}
	if err := lf.setEnd(info.LogSize); err != nil {
		v.Close()
		return nil, fmt.Errorf("read events.ndjson: %w", err)
	}
	logVersion := versionOf("log", x.generation, uint64(info.LogSize))
	state, full := b.state.update(snap.State, x.generation, logVersion, grown, now, b.log)
	info.Beliefs = b.state.beliefs()
	info.Full = full

	root := newTree("", permDir, now)
	// The log's own mtime: the kernel drops cached pages when it changes.
	root.add(eventsPath, &entry{lr: &logRange{f: lf, size: info.LogSize}, perm: permAppend, mtime: fi.ModTime(),
		version: logVersion, ino: pathIno(fmt.Sprintf("%s\x00%d:%d", eventsPath, x.dev, x.ino))})
	addTimelines(root, x, &b.timelines, lf, now)
	addForks(root, x, f, snap.ForkRecords, snap.ForkHeld, now, b.log)
	addHeld(root, dirQuarant, snap.Quarantine, now)
	addHeld(root, dirPending, snap.Pending, now)
	if err := addOwnFiles(root, b.dir, now, b.log); err != nil {
		v.Close()
		return nil, err
	}
	root.mkdir(dirNew).perm = permDropDir
	root.mkdir(dirInbox).perm = permDropDir
	if b.status != nil {
		root.add(fileStatus, fileEntry(b.status, now))
	}
	v.Info = info
	v.root = root.freeze().withChild(dirState, state)
	return v, nil
}

func fileEntry(data []byte, mtime time.Time) *entry {
	return &entry{data: data, perm: permFile, mtime: mtime, version: versionOf("data", hashBytes(data))}
}

func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func versionOf(kind string, parts ...uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(kind))
	for _, p := range parts {
		h.Write(strconv.AppendUint(nil, p, 16))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// splitKey splits a belief key "subject:predicate" at its last ':' (the
// reducer joins them with one; a subject may hold more). A key without a
// ':' is all subject, with an empty predicate.
func splitKey(key string) (subject, predicate string) {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return key, ""
	}
	return key[:i], key[i+1:]
}

// BeliefPath returns where the mount shows a belief: state/<namespace>/
// <subject>/<predicate>, both names escaped by EscapeName.
func BeliefPath(namespace, key string) string {
	s, p := splitKey(key)
	return dirState + "/" + namespace + "/" + EscapeName(s) + "/" + EscapeName(p)
}

// timelines are the runs of log bytes of each actor, kept between builds
// and extended with the lines the index gained. Published views share
// the segment lists: a build only appends to them, and merges a line
// into the run before it only when that run was made in the same build.
// Only the goroutine that builds views uses it.
type timelines struct {
	gen    uint64 // the index generation the lists follow
	recs   int    // index records taken in
	segs   [][]segment
	sizes  []int64
	sealed []int // per actor, segments a published view may read
}

// update takes in the records x gained since the last call (all of them
// after a rebuilt index).
func (tl *timelines) update(x *logIndex) {
	if tl.gen != x.generation || tl.recs > len(x.recs) {
		*tl = timelines{gen: x.generation}
	}
	for len(tl.segs) < len(x.actors) {
		tl.segs = append(tl.segs, nil)
		tl.sizes = append(tl.sizes, 0)
		tl.sealed = append(tl.sealed, 0)
	}
	for _, r := range x.recs[tl.recs:] {
		a := r.actor
		s := tl.segs[a]
		if n := len(s); n > tl.sealed[a] && s[n-1].off+s[n-1].n == r.off {
			s[n-1].n += r.n // adjacent lines of one actor read as one run
		} else {
			s = append(s, segment{off: r.off, pos: tl.sizes[a], n: r.n})
		}
		tl.segs[a] = s
		tl.sizes[a] += r.n
	}
	tl.recs = len(x.recs)
	for a := range tl.segs {
		tl.sealed[a] = len(tl.segs[a])
	}
}

// addTimelines adds timeline/<actor>.ndjson: each actor's event lines in
// log order, byte for byte.
func addTimelines(root *treeBuilder, x *logIndex, tl *timelines, lf *logFile, now time.Time) {
	root.mkdir(dirTimeline)
	tl.update(x)
	for a, actor := range x.actors {
		segs := tl.segs[a][:len(tl.segs[a]):len(tl.segs[a])]
		last := int64(0)
		if n := len(segs); n > 0 {
			last = segs[n-1].off
		}
		root.add(dirTimeline+"/"+EscapeName(actor)+".ndjson", &entry{
			lr:    &logRange{f: lf, size: tl.sizes[a], segs: segs},
			perm:  permFile,
			mtime: now, version: versionOf("timeline", x.generation, uint64(tl.sizes[a]), uint64(last)),
		})
	}
}

// addForks adds forks/<actor>/<fork point>/ with every competing signed
// event (<event_id>.json, the line as the log holds it; a second content
// of an event id kept aside is <event_id>.held.json, .held-2.json, ...)
// and the device's record of the fork (record.json) when it has one.
func addForks(root *treeBuilder, x *logIndex, f *os.File, records []ForkRecord, held []Held, now time.Time, log *slog.Logger) {
	root.mkdir(dirForks)
	type fork struct {
		actor, point string
		ids          []string
		record       []byte
	}
	forks := map[string]*fork{}
	get := func(actor, point string) *fork {
		k := forkKey(actor, point)
		if forks[k] == nil {
			forks[k] = &fork{actor: actor, point: point}
		}
		return forks[k]
	}
	for _, r := range records {
		fk := get(r.Actor, r.ForkPoint)
		fk.ids = append(fk.ids, r.EventIDs...)
		fk.record = r.JSON
	}
	for k, recs := range x.forks {
		actor, point, _ := strings.Cut(k, "\x00")
		fk := get(actor, point)
		for _, i := range recs {
			fk.ids = append(fk.ids, x.recs[i].id)
		}
	}
	heldByID := map[string][]Held{}
	for _, h := range held {
		heldByID[h.EventID] = append(heldByID[h.EventID], h)
	}
	for _, fk := range forks {
		dir := dirForks + "/" + EscapeName(fk.actor) + "/" + EscapeName(fk.point)
		root.mkdir(dir)
		if fk.record != nil {
			root.add(dir+"/record.json", fileEntry(fk.record, now))
		}
		slices.Sort(fk.ids)
		for _, id := range slices.Compact(fk.ids) {
			if i, ok := x.byID[id]; ok {
				r := x.recs[i]
				line, err := readRange(f, r.off, r.off+r.n)
				if err != nil {
					log.Warn("mount: fork evidence unreadable", "event", id, "err", err)
					continue
				}
				root.add(dir+"/"+EscapeName(id)+".json", fileEntry(line, now))
			}
			for j, h := range heldByID[id] {
				name := EscapeName(id) + ".held.json"
				if j > 0 {
					name = EscapeName(id) + ".held-" + strconv.Itoa(j+1) + ".json"
				}
				root.add(dir+"/"+name, fileEntry([]byte(h.Line+"\n"), now))
			}
		}
	}
}

// addHeld adds one JSON file per held event under dir: <event_id>.json,
// or held-<n>.json for a line without an id.
func addHeld(root *treeBuilder, dir string, held []Held, now time.Time) {
	root.mkdir(dir)
	used := map[string]bool{}
	for i, h := range held {
		base := "held-" + strconv.Itoa(i+1)
		if h.EventID != "" {
			base = EscapeName(h.EventID)
		}
		name := base + ".json"
		for n := 2; used[name]; n++ {
			name = base + "-" + strconv.Itoa(n) + ".json"
		}
		used[name] = true
		root.add(dir+"/"+name, fileEntry(h.JSON, now))
	}
}

// ownFiles are the backpack's own files the mount shows (besides the log),
// byte for byte; identity/ and policies/ are walked.
var ownFiles = []string{manifestFile, manifestSigFile, merkleRootFile}
var ownDirs = []string{"identity", "policies"}

// hiddenOwnFile reports whether a backpack file must not be shown: private
// keys (any path element that mentions "private"), hidden and temporary
// files.
func hiddenOwnFile(rel string) bool {
	for el := range strings.SplitSeq(rel, "/") {
		l := strings.ToLower(el)
		if strings.Contains(l, "private") || strings.HasPrefix(el, ".") || strings.HasSuffix(l, ".tmp") {
			return true
		}
	}
	return false
}

func addOwnFiles(root *treeBuilder, dir string, now time.Time, log *slog.Logger) error {
	count := 0
	addFile := func(rel string, fi fs.FileInfo) error {
		if hiddenOwnFile(rel) || !fi.Mode().IsRegular() {
			return nil
		}
		if fi.Size() > maxOwnFile {
			log.Warn("mount: file too large to show", "file", rel, "size", fi.Size())
			return nil
		}
		if count++; count > maxOwnFiles {
			return fmt.Errorf("more than %d files under identity/ and policies/", maxOwnFiles)
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // replaced while we looked
			}
			return err
		}
		e := fileEntry(data, fi.ModTime())
		root.add(rel, e)
		return nil
	}
	for _, rel := range ownFiles {
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := addFile(rel, fi); err != nil {
			return err
		}
	}
	for _, d := range ownDirs {
		root.mkdir(d)
		base := filepath.Join(dir, d)
		err := filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			rel = filepath.ToSlash(rel)
			if hiddenOwnFile(rel) {
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if de.IsDir() {
				if p != base {
					root.mkdir(rel)
				}
				return nil
			}
			fi, err := de.Info()
			if err != nil {
				return nil
			}
			return addFile(rel, fi)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// A Viewer builds successive views of one backpack from a Source. A view
// after the first reuses the previous one's state/ where the log only
// grew: it looks up and re-encodes only the beliefs the new lines touch
// (ViewInfo.Full says when it built them all). A Viewer is for one
// goroutine at a time.
type Viewer struct{ b builder }

// NewViewer returns a Viewer of the backpack in dir that src loads.
func NewViewer(dir string, src Source) *Viewer {
	return &Viewer{b: builder{dir: dir, src: src, log: slog.New(slog.DiscardHandler)}}
}

// View builds a view of the backpack as src loads it now. The caller
// closes it.
func (vw *Viewer) View(ctx context.Context) (*View, error) { return vw.b.build(ctx) }

// NewView builds a view of the backpack in dir as src loads it now. The
// caller closes it.
func NewView(ctx context.Context, dir string, src Source) (*View, error) {
	return NewViewer(dir, src).View(ctx)
}
