package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"syscall"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/merkle"
	"github.com/backpack-field/backpack/reducer"
)

// The state cache lets a large backpack open without replaying its log.
// It records the reducer state with its full evidence index (so that
// resuming is exact, unlike the reference's checkpoint resume), the
// actors' heads, and how far into the log it reaches together with the
// SHA-256 of that prefix. It is used only when the log still starts with
// exactly that prefix; the events after it are then replayed. Any
// mismatch, version change or damage means a replay.
//
// It is three files, so that a merge rewrites only what changed:
//   - state/backpack_cache.bin: "BPCACHE2\n", one canonical-JSON header
//     line, then the reducer state in the reducer's cache encoding
//     (reducer_bytes long, SHA-256 reducer_sha256);
//   - state/backpack_index.bin: the log index (index_bytes long, SHA-256
//     index_sha256), written while the state is still being computed;
//   - state/backpack_base.bin: the base snapshot (base_bytes long,
//     SHA-256 base_sha256), absent when it is the main state. A merge
//     that reorders the log's tail after it leaves it as it is.
//
// The header is written last: a crash between the files leaves a header
// whose digests do not match the other files, which are then not used
// (the index is rebuilt from the log, the snapshot dropped).
const cacheMagic = "BPCACHE2\n"

const maxCacheHeader = 64 << 20

// errCacheVersion is a state cache in another version's layout (an
// earlier backpack's): replayed once, then written in this layout.
var errCacheVersion = errors.New("store: state cache from another version of backpack")

type cacheFile struct {
	maxKey                 *bplog.OrderItem
	offset, lines, entries int64
	cleanLines             int64
	cleanOffset            int64
	prefix                 string
	heads                  map[string]Head
	bad                    []BadLine
	state                  *reducer.State
	stateData              []byte    // the state, not decoded (DeferState)
	index                  *logIndex // nil when the cache has none
	base                   *baseState
}

// readCache reads and checks the state cache. onHeader, when set, hears
// the log offset the cache covers as soon as the header is read, so that
// the caller can check the log's prefix while the rest decodes. The base
// snapshot's file is read when the snapshot is first needed.
func (b *Backpack) readCache(onHeader func(offset int64)) (*cacheFile, error) {
	data, err := os.ReadFile(b.path(CachePath))
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(data, []byte(cacheMagic)) {
		if bytes.HasPrefix(data, []byte("BPCACHE")) {
			return nil, errCacheVersion
		}
		return nil, errors.New("store: state cache: unknown format")
	}
	data = data[len(cacheMagic):]
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 || nl > maxCacheHeader {
		return nil, errors.New("store: state cache: bad header")
	}
	h, err := canon.Limits{MaxSize: maxCacheHeader}.Parse(data[:nl])
	if err != nil {
		return nil, fmt.Errorf("store: state cache header: %w", err)
	}
	if onHeader != nil {
		if off, ok := h.Field("log_offset").Int64(); ok {
			onHeader(off)
		}
	}
	body := data[nl+1:]
	n, _ := h.Field("reducer_bytes").Int64()
	ni, _ := h.Field("index_bytes").Int64()
	nb, _ := h.Field("base_bytes").Int64()
	if n < 0 || ni < 0 || nb < 0 || n != int64(len(body)) {
		return nil, errors.New("store: state cache: truncated")
	}
	// The index is read, checked and decoded on another core while the
	// reducer state is. An index that does not match the header is not
	// used: it is rebuilt from the log when needed.
	var x *logIndex
	done := make(chan struct{})
	go func() {
		defer close(done)
		if ni == 0 {
			return
		}
		idx, err := readSized(b.path(CacheIndexPath), ni)
		if err != nil {
			return
		}
		isum := sha256.Sum256(idx)
		if hex.EncodeToString(isum[:]) == h.Field("index_sha256").Str() {
			x, _ = decodeIndex(idx)
		}
	}()
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != h.Field("reducer_sha256").Str() {
		<-done
		return nil, errors.New("store: state cache: checksum mismatch")
	}
	var st *reducer.State
	if !b.opts.DeferState {
		st, err = decodeReducer(body)
	}
	<-done
	if err != nil {
		return nil, fmt.Errorf("store: state cache: %w", err)
	}
	c := parseResume(h)
	c.state = st
	if st == nil {
		c.stateData = body
	}
	c.index = x
	// The base snapshot: its own file, or (base_bytes 0) the main state
	// when it was taken at the cache's end.
	if bo, ok := h.Field("base_offset").Int64(); ok && bo >= 0 && bo <= c.offset {
		bl, _ := h.Field("base_lines").Int64()
		be, _ := h.Field("base_entries").Int64()
		want, werr := hex.DecodeString(h.Field("base_sha256").Str())
		switch {
		case nb == 0 && bo == c.offset:
			c.base = &baseState{offset: bo, lines: int(bl), entries: int(be), data: bytes.Clone(body)}
		case nb > 0 && werr == nil && len(want) == sha256.Size:
			// Read and checked against its digest when first used
			// (intact).
			c.base = &baseState{offset: bo, lines: int(bl), entries: int(be), file: b.path(CacheBasePath), size: nb, want: want}
			c.base.stored, _ = statID(c.base.file)
		}
	}
	return c, nil
}

// readSized reads the file at path, which must be exactly n bytes long.
func readSized(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != n {
		return nil, fmt.Errorf("store: %s: %d bytes, want %d", filepath.Base(path), fi.Size(), n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, err
	}
	return data, nil
}

// fileID identifies a file's contents the way a stat cache does: device,
// inode, size and modification time.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func statID(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id, true
}

// prefixHash is the running hash of a log's first offset bytes, computed
// on another goroutine (hashPrefix), and those bytes when kept.
type prefixHash struct {
	offset int64
	done   chan struct{}
	h      *logHasher
	data   []byte // the bytes, when asked to keep them
	ahead  bool   // the log is shorter than offset
	err    error
}

// hashPrefix starts hashing the first offset bytes of the log file f,
// keeping them in memory with keep.
func hashPrefix(f *os.File, offset int64, keep bool) *prefixHash {
	p := &prefixHash{offset: offset, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		st, err := f.Stat()
		if err != nil {
			p.err = err
			return
		}
		if offset < 0 || offset > st.Size() {
			p.ahead = true
			return
		}
		p.h = newLogHasher()
		if !keep {
			_, p.err = io.Copy(p.h, io.NewSectionReader(f, 0, offset))
			return
		}
		p.data = make([]byte, offset)
		for at := int64(0); at < offset && p.err == nil; {
			n := min(offset-at, markEvery)
			_, p.err = f.ReadAt(p.data[at:at+n], at)
			p.h.Write(p.data[at : at+n])
			at += n
		}
	}()
	return p
}

// prefixMatches reports whether the log's first c.offset bytes are the
// bytes the cache was made from, hashing them unless p (started when the
// header was read) already does. On a match b.logHash holds the prefix's
// running hash.
func (b *Backpack) prefixMatches(f *os.File, c *cacheFile, p *prefixHash) (bool, error) {
	if p == nil || p.offset != c.offset {
		if p != nil {
			<-p.done
		}
		p = hashPrefix(f, c.offset, b.opts.KeepLog)
	}
	<-p.done
	if p.err != nil {
		return false, p.err
	}
	if p.ahead {
		b.log.Info("state cache is ahead of the log; replaying", "cache_offset", c.offset)
		return false, nil
	}
	if fmt.Sprintf("%x", p.h.Sum(nil)) != c.prefix {
		b.log.Info("state cache does not match the log (rewritten by another tool?); replaying")
		return false, nil
	}
	b.logHash = p.h
	b.logBytes = p.data
	return true, nil
}

func (b *Backpack) applyCache(c *cacheFile) {
	b.state, b.pending = c.state, nil
	if c.state == nil {
		b.pending = &pendingState{data: c.stateData}
	}
	b.heads = c.heads
	b.badLines = c.bad
	b.logSize = c.offset
	b.lines = int(c.lines)
	b.entries = int(c.entries)
	b.cleanLines, b.cleanOffset = 0, 0
	if c.cleanLines >= 0 && c.cleanLines <= c.lines && c.cleanOffset >= 0 && c.cleanOffset <= c.offset {
		b.cleanLines, b.cleanOffset = int(c.cleanLines), c.cleanOffset
	}
	b.cacheSize = c.offset
	b.index = c.index
	b.base = c.base
	b.maxKey, b.maxKeyKnown = bplog.OrderItem{}, c.maxKey != nil
	if c.maxKey != nil {
		b.maxKey = *c.maxKey
	}
}

// writeCacheLocked writes the state cache for the log as it is now.
func (b *Backpack) writeCacheLocked() error {
	cw, err := b.stageCacheLocked(nil)
	if err != nil {
		return err
	}
	return b.commitCacheLocked(cw)
}

// indexStage is the log index being encoded and written to a synced temp
// file on another goroutine (stageIndex).
type indexStage struct {
	done chan struct{}
	size int64
	sum  [32]byte // of the encoding, which is the whole file
	tmp  string
	err  error
}

// stageIndex starts writing x's encoding beside the index file. It only
// reads x's arrays, which nothing changes while the writer lock is held
// and no event is added.
func (b *Backpack) stageIndex(x *logIndex) *indexStage {
	s := &indexStage{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		data := x.encode()
		s.size = int64(len(data))
		s.sum = sha256.Sum256(data)
		s.tmp, s.err = stageTemp(b.path(CacheIndexPath), 0o644, data)
	}()
	return s
}

// cacheWrite is a state cache staged in synced temp files, to be renamed
// into place by commitCacheLocked (or dropped by discard).
type cacheWrite struct {
	parts      []cachePart // in commit order: the header's file last
	removeBase bool        // no base file goes with this cache
	base       *baseState  // the snapshot the cache names, if any
}

type cachePart struct {
	rel string
	tmp string
	sum merkle.Hash // of the whole file, for the manifest
}

// discard removes the temp files of a cache that is not committed.
func (cw *cacheWrite) discard() {
	if cw == nil {
		return
	}
	for _, p := range cw.parts {
		os.Remove(p.tmp)
	}
}

// stageCacheLocked writes the state cache for the log as it is now to
// synced temp files. ix, when set, is the index already being staged
// (the rewrite starts it before the state is computed).
func (b *Backpack) stageCacheLocked(ix *indexStage) (_ *cacheWrite, err error) {
	if err := os.MkdirAll(b.path("state"), 0o755); err != nil {
		return nil, err
	}
	if ix == nil {
		x := b.index
		if x == nil {
			if x, err = b.indexLocked(context.Background()); err != nil {
				return nil, err
			}
		}
		ix = b.stageIndex(x)
	}
	cw := &cacheWrite{}
	defer func() {
		<-ix.done
		if err != nil {
			cw.discard()
			os.Remove(ix.tmp)
		}
	}()
	st, err := b.stateLocked()
	if err != nil {
		return nil, err
	}
	body, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	if b.logSize >= minBaseBytes && (b.base == nil || baseStale(b.base.offset, b.logSize)) {
		// The snapshot fell far behind: take it here, at the end.
		b.base = &baseState{offset: b.logSize, lines: b.lines, entries: b.entries, data: body}
	}
	if bs := b.base; bs != nil && bs.data != nil && bs.want != nil && !bs.intact() {
		b.log.Warn("state snapshot in the cache is damaged; dropped")
		b.base = nil
	}
	// The base snapshot's file is written only when it does not already
	// hold this snapshot.
	cw.removeBase = true
	if bs := b.base; bs != nil && bs.offset <= b.logSize {
		cw.base = bs
		if bs.offset < b.logSize {
			cw.removeBase = false
			basePart, err := b.stageBaseLocked(bs)
			if err != nil {
				return nil, err
			}
			if basePart != nil {
				cw.parts = append(cw.parts, *basePart)
			}
			if b.base == nil {
				cw.base, cw.removeBase = nil, true
			}
		}
	}
	<-ix.done
	if ix.err != nil {
		return nil, ix.err
	}
	cw.parts = append(cw.parts, cachePart{rel: CacheIndexPath, tmp: ix.tmp, sum: merkle.Hash(ix.sum)})
	h := b.resumeInfoLocked().
		With("version", canon.IntValue(2)).
		With("reducer_bytes", canon.IntValue(int64(len(body)))).
		With("reducer_sha256", canon.StringValue(hex.EncodeToString(sum[:]))).
		With("index_bytes", canon.IntValue(ix.size)).
		With("index_sha256", canon.StringValue(hex.EncodeToString(ix.sum[:])))
	if bs := cw.base; bs != nil {
		bsum := sha256.Sum256(nil)
		var n int64
		if !cw.removeBase {
			if bs.sum != nil {
				copy(bsum[:], bs.sum)
			} else {
				copy(bsum[:], bs.want) // its file, not read, holds it
			}
			n = bs.size
			if bs.data != nil {
				n = int64(len(bs.data))
			}
		}
		h = h.With("base_offset", canon.IntValue(bs.offset)).
			With("base_lines", canon.IntValue(int64(bs.lines))).
			With("base_entries", canon.IntValue(int64(bs.entries))).
			With("base_bytes", canon.IntValue(n)).
			With("base_sha256", canon.StringValue(hex.EncodeToString(bsum[:])))
	}
	hdr, err := canon.Encode(h)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 0, len(cacheMagic)+len(hdr)+1)
	head = append(append(append(head, cacheMagic...), hdr...), '\n')
	// The file is hashed for the manifest on another core while it is
	// written.
	summed := make(chan merkle.Hash, 1)
	go func() {
		d := sha256.New()
		d.Write(head)
		d.Write(body)
		summed <- merkle.Hash(d.Sum(nil))
	}()
	tmp, err := stageTemp(b.path(CachePath), 0o644, head, body)
	fsum := <-summed
	if err != nil {
		return nil, err
	}
	cw.parts = append(cw.parts, cachePart{rel: CachePath, tmp: tmp, sum: fsum})
	return cw, nil
}

// stageBaseLocked writes the base snapshot bs to a synced temp file beside
// the base file, unless that file still holds it (nil then). A snapshot
// never read whose file changed since is dropped (b.base nil).
func (b *Backpack) stageBaseLocked(bs *baseState) (*cachePart, error) {
	id, ok := statID(b.path(CacheBasePath))
	if ok && bs.stored != (fileID{}) && id == bs.stored {
		return nil, nil
	}
	if bs.data == nil {
		if bs.intact() {
			bs.stored = id
			return nil, nil
		}
		b.log.Warn("state snapshot file changed; dropped")
		b.base = nil
		return nil, nil
	}
	bs.sumData()
	tmp, err := stageTemp(b.path(CacheBasePath), 0o644, bs.data)
	if err != nil {
		return nil, err
	}
	return &cachePart{rel: CacheBasePath, tmp: tmp, sum: merkle.Hash(bs.sum)}, nil
}

// commitCacheLocked puts a staged cache in place: the index and base
// files first, the header's file last.
func (b *Backpack) commitCacheLocked(cw *cacheWrite) error {
	for i, p := range cw.parts {
		if err := os.Rename(p.tmp, b.path(p.rel)); err != nil {
			for _, q := range cw.parts[i:] {
				os.Remove(q.tmp)
			}
			return err
		}
	}
	if cw.removeBase {
		if err := os.Remove(b.path(CacheBasePath)); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Debug("old state snapshot file not removed", "err", err)
		}
	}
	if err := syncDir(b.path("state")); err != nil {
		return err
	}
	for _, p := range cw.parts {
		b.files.remember(b.path(p.rel), p.rel, p.sum)
	}
	if cw.base != nil && !cw.removeBase {
		cw.base.stored, _ = statID(b.path(CacheBasePath))
	}
	b.noteCacheSum()
	b.cacheSize = b.logSize
	b.sinceCache = 0
	b.indexScanned = false
	return nil
}

// resumeInfoLocked describes where in the log the current state stands:
// what the state cache and checkpoints need to resume exactly.
func (b *Backpack) resumeInfoLocked() canon.Value {
	var hb canon.ObjectBuilder
	for a, h := range b.heads {
		var o canon.ObjectBuilder
		o.Set("head", canon.StringValue(h.ID)).Set("events", canon.IntValue(int64(h.Events)))
		hb.Set(a, o.Value())
	}
	bad := []canon.Value{}
	for _, l := range b.badLines {
		var o canon.ObjectBuilder
		o.Set("line", canon.IntValue(int64(l.Line))).Set("offset", canon.IntValue(l.Offset)).Set("reason", canon.StringValue(l.Reason))
		bad = append(bad, o.Value())
	}
	var h canon.ObjectBuilder
	h.Set("log_offset", canon.IntValue(b.logSize)).
		Set("log_lines", canon.IntValue(int64(b.lines))).
		Set("log_entries", canon.IntValue(int64(b.entries))).
		Set("log_prefix_sha256", canon.StringValue(b.logDigest())).
		Set("heads", hb.Value()).
		Set("bad_lines", canon.ArrayValue(bad...)).
		Set("clean_lines", canon.IntValue(int64(b.cleanLines))).
		Set("clean_offset", canon.IntValue(b.cleanOffset))
	if b.maxKeyKnown {
		var mk canon.ObjectBuilder
		mk.Set("timestamp_utc", canon.StringValue(b.maxKey.Timestamp)).Set("event_id", canon.StringValue(b.maxKey.ID))
		h.Set("max_key", mk.Value())
	}
	return h.Value()
}

// parseResume reads what resumeInfoLocked wrote.
func parseResume(h canon.Value) *cacheFile {
	c := &cacheFile{prefix: h.Field("log_prefix_sha256").Str(), heads: map[string]Head{}, offset: -1}
	if off, ok := h.Field("log_offset").Int64(); ok {
		c.offset = off
	}
	c.lines, _ = h.Field("log_lines").Int64()
	c.cleanLines, _ = h.Field("clean_lines").Int64()
	c.cleanOffset, _ = h.Field("clean_offset").Int64()
	c.entries, _ = h.Field("log_entries").Int64()
	for _, m := range h.Field("heads").Members() {
		n, _ := m.Value.Field("events").Int64()
		c.heads[m.Key] = Head{ID: m.Value.Field("head").Str(), Events: int(n)}
	}
	for _, v := range h.Field("bad_lines").Elems() {
		l, _ := v.Field("line").Int64()
		o, _ := v.Field("offset").Int64()
		c.bad = append(c.bad, BadLine{Line: int(l), Offset: o, Reason: v.Field("reason").Str()})
	}
	if mk := h.Field("max_key"); mk.Kind() == canon.Object {
		c.maxKey = &bplog.OrderItem{Timestamp: mk.Field("timestamp_utc").Str(), ID: mk.Field("event_id").Str()}
	}
	return c
}

// CacheInfo describes a state cache file for verification.
type CacheInfo struct {
	Offset    int64
	StateHash string
}

// ReadCacheInfo reads dir's state cache and returns where it stands and
// the hash of the state it holds. os.ErrNotExist when there is none.
func ReadCacheInfo(dir string) (*CacheInfo, error) {
	b := &Backpack{dir: dir}
	c, err := b.readCache(nil)
	if err != nil {
		return nil, err
	}
	sh, err := c.state.StateHash()
	if err != nil {
		return nil, err
	}
	return &CacheInfo{Offset: c.offset, StateHash: sh}, nil
}

func decodeReducer(b []byte) (*reducer.State, error) {
	s := reducer.New()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

// baseState is the reducer state (in the reducer's cache encoding) after
// the log's first lines lines (entries JSON values), which end at byte
// offset.
type baseState struct {
	offset         int64
	lines, entries int
	data           []byte // nil until read from file
	file           string // where data is read from when nil
	size           int64  // the file's size as the cache names it
	sum            []byte // SHA-256 of data, once computed (nil: not yet)
	want           []byte // SHA-256 the cache named for it, not checked yet (nil: none)
	stored         fileID // the base file when it was known to hold this snapshot
}

// intact reads the snapshot from its file if it was not yet, computes its
// digest (once) and reports whether it is the one the cache named.
func (bs *baseState) intact() bool {
	if bs.data == nil {
		if bs.file == "" {
			return false
		}
		d, err := readSized(bs.file, bs.size)
		if err != nil {
			return false
		}
		bs.data = d
	}
	bs.sumData()
	return bs.want == nil || bytes.Equal(bs.sum, bs.want)
}

func (bs *baseState) sumData() {
	if bs.sum == nil {
		s := sha256.Sum256(bs.data)
		bs.sum = s[:]
	}
}

// A merge that must put new events before existing lines replays the
// reducer from the first changed line. To spare the replay of everything
// before it, the store keeps one snapshot of the state at the start of
// the log's recent tail: the last sixteenth of the log, where the events
// a peer brings usually land (they are newer than what both devices held
// when they last met). It is taken when a replay passes that point, and
// moved to the end of the log when the cache is written and it has
// fallen more than a quarter of the log behind. Logs under
// minBaseBytes replay in a blink and keep none.
var minBaseBytes int64 = 1 << 20

// baseStale reports whether a snapshot at offset is too far behind the
// end of a log of size bytes to keep.
func baseStale(offset, size int64) bool { return offset < size-size/4 }

// baseTarget returns where a new snapshot should be taken in a log of
// size bytes (math.MaxInt64: none).
func baseTarget(size int64) int64 {
	if size < minBaseBytes {
		return math.MaxInt64
	}
	return size - size/16
}

// maybeBaseLocked takes the snapshot when a replay reaches the line at
// offset (lines and entries counting what came before it), target is
// reached, and the current snapshot is missing or has fallen behind
// (before size - size/4, baseStale). A snapshot that is still close
// enough is kept, so that it need not be written again.
func (b *Backpack) maybeBaseLocked(offset int64, lines, entries int, target, size int64) {
	if offset < target || (b.base != nil && !baseStale(b.base.offset, size)) || b.state == nil {
		return
	}
	enc, err := b.state.MarshalBinary()
	if err != nil {
		b.log.Warn("state snapshot not taken", "err", err)
		return
	}
	b.base = &baseState{offset: offset, lines: lines, entries: entries, data: enc}
}
