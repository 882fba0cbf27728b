package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/merkle"
	"github.com/backpack-field/backpack/reducer"
)

// The state cache (state/backpack_cache.bin) lets a large backpack open
// without replaying its log. It records the reducer state with its full
// evidence index (so that resuming is exact, unlike the reference's
// checkpoint resume), the actors' heads, and how far into the log it
// reaches together with the SHA-256 of that prefix. It is used only when
// the log still starts with exactly that prefix; the events after it are
// then replayed. Any mismatch, version change or damage means a replay.
//
// Layout: "BPCACHE1\n", one canonical-JSON header line, then the reducer
// state in the reducer's cache encoding (reducer_bytes long, SHA-256
// reducer_sha256).
const cacheMagic = "BPCACHE1\n"

const maxCacheHeader = 64 << 20

type cacheFile struct {
	maxKey                 *bplog.OrderItem
	offset, lines, entries int64
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
// the caller can check the log's prefix while the rest decodes.
func (b *Backpack) readCache(onHeader func(offset int64)) (*cacheFile, error) {
	data, err := os.ReadFile(b.path(CachePath))
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(data, []byte(cacheMagic)) {
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
	if n < 0 || ni < 0 || nb < 0 || n+ni+nb != int64(len(body)) {
		return nil, errors.New("store: state cache: truncated")
	}
	baseData := body[n+ni:]
	idx := body[n : n+ni]
	body = body[:n]
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != h.Field("reducer_sha256").Str() {
		return nil, errors.New("store: state cache: checksum mismatch")
	}
	// The index decodes on another core while the reducer state does.
	var x *logIndex
	done := make(chan struct{})
	go func() {
		defer close(done)
		if ni > 0 {
			isum := sha256.Sum256(idx)
			if hex.EncodeToString(isum[:]) == h.Field("index_sha256").Str() {
				x, _ = decodeIndex(idx)
			}
		}
	}()
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
	// The base snapshot: its own bytes, or (base_bytes 0) the main
	// state's when it was taken at the cache's end.
	if bo, ok := h.Field("base_offset").Int64(); ok && bo >= 0 && bo <= c.offset {
		bl, _ := h.Field("base_lines").Int64()
		be, _ := h.Field("base_entries").Int64()
		want, werr := hex.DecodeString(h.Field("base_sha256").Str())
		switch {
		case nb == 0 && bo == c.offset:
			c.base = &baseState{offset: bo, lines: int(bl), entries: int(be), data: bytes.Clone(body)}
		case nb > 0 && werr == nil && len(want) == sha256.Size:
			// Its digest is checked when it is first used (intact).
			c.base = &baseState{offset: bo, lines: int(bl), entries: int(be), data: bytes.Clone(baseData), want: want}
		}
	}
	return c, nil
}

// prefixHash is the running hash of a log's first offset bytes, computed
// on another goroutine (hashPrefix).
type prefixHash struct {
	offset int64
	done   chan struct{}
	h      hash.Hash
	ahead  bool // the log is shorter than offset
	err    error
}

// hashPrefix starts hashing the first offset bytes of the log file f.
func hashPrefix(f *os.File, offset int64) *prefixHash {
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
		p.h = sha256.New()
		_, p.err = io.Copy(p.h, io.NewSectionReader(f, 0, offset))
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
		p = hashPrefix(f, c.offset)
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
	data, err := b.encodeCacheLocked()
	if err != nil {
		return err
	}
	return b.installCacheLocked(data)
}

// encodeCacheLocked returns the state cache's bytes for the log as it is
// now.
func (b *Backpack) encodeCacheLocked() ([]byte, error) {
	x, err := b.indexLocked(context.Background())
	if err != nil {
		return nil, err
	}
	// The reducer state and the index encode on two cores.
	var idx []byte
	var isum [32]byte
	done := make(chan struct{})
	go func() {
		idx = x.encode()
		isum = sha256.Sum256(idx)
		close(done)
	}()
	st, err := b.stateLocked()
	var body []byte
	if err == nil {
		body, err = st.MarshalBinary()
	}
	<-done
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	if b.logSize >= minBaseBytes && (b.base == nil || baseStale(b.base.offset, b.logSize)) {
		// The snapshot fell far behind: take it here, at the end.
		b.base = &baseState{offset: b.logSize, lines: b.lines, entries: b.entries, data: body}
	}
	h := b.resumeInfoLocked().
		With("version", canon.IntValue(1)).
		With("reducer_bytes", canon.IntValue(int64(len(body)))).
		With("reducer_sha256", canon.StringValue(hex.EncodeToString(sum[:]))).
		With("index_bytes", canon.IntValue(int64(len(idx)))).
		With("index_sha256", canon.StringValue(hex.EncodeToString(isum[:])))
	if bs := b.base; bs != nil && bs.want != nil && !bs.intact() {
		b.log.Warn("state snapshot in the cache is damaged; dropped")
		b.base = nil
	}
	var baseData []byte
	if bs := b.base; bs != nil && bs.offset <= b.logSize {
		if bs.offset < b.logSize {
			baseData = bs.data
		}
		bsum := sha256.Sum256(nil)
		if baseData != nil {
			if bs.sum == nil {
				sum := sha256.Sum256(bs.data)
				bs.sum = sum[:]
			}
			copy(bsum[:], bs.sum)
		}
		h = h.With("base_offset", canon.IntValue(bs.offset)).
			With("base_lines", canon.IntValue(int64(bs.lines))).
			With("base_entries", canon.IntValue(int64(bs.entries))).
			With("base_bytes", canon.IntValue(int64(len(baseData)))).
			With("base_sha256", canon.StringValue(hex.EncodeToString(bsum[:])))
	}
	hdr, err := canon.Encode(h)
	if err != nil {
		return nil, err
	}
	data := make([]byte, 0, len(cacheMagic)+len(hdr)+1+len(body)+len(idx)+len(baseData))
	data = append(data, cacheMagic...)
	data = append(data, hdr...)
	data = append(data, '\n')
	data = append(data, body...)
	data = append(data, idx...)
	data = append(data, baseData...)
	return data, nil
}

// installCacheLocked writes the state cache encodeCacheLocked made.
func (b *Backpack) installCacheLocked(data []byte) error {
	st, err := b.stageCache(data)
	if err != nil {
		return err
	}
	return b.commitCacheLocked(st)
}

// stagedCache is a state cache written to a temp file, with its digest.
type stagedCache struct {
	commit func() error
	sum    merkle.Hash
}

// stageCache writes the cache's bytes to a synced temp file (it touches
// nothing the lock guards, so it may run beside other work) while it
// hashes them for the manifest on another core; commitCacheLocked puts it
// in place.
func (b *Backpack) stageCache(data []byte) (*stagedCache, error) {
	if err := os.MkdirAll(b.path("state"), 0o755); err != nil {
		return nil, err
	}
	summed := make(chan merkle.Hash, 1)
	go func() { summed <- merkle.Sum(data) }()
	commit, err := stageFile(b.path(CachePath), data, 0o644)
	sum := <-summed
	if err != nil {
		return nil, err
	}
	return &stagedCache{commit: commit, sum: sum}, nil
}

// commitCacheLocked puts a staged cache in place.
func (b *Backpack) commitCacheLocked(st *stagedCache) error {
	if err := st.commit(); err != nil {
		return err
	}
	if k, ok := b.files.remember(b.path(CachePath), CachePath, st.sum); ok {
		b.saveCacheSum(k, st.sum)
	}
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
		Set("bad_lines", canon.ArrayValue(bad...))
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
	data           []byte
	sum            []byte // SHA-256 of data, once computed (nil: not yet)
	want           []byte // SHA-256 the cache named for it, not checked yet (nil: none)
}

// intact computes the snapshot's digest (once) and reports whether it is
// the one the cache named.
func (bs *baseState) intact() bool {
	if bs.sum == nil {
		s := sha256.Sum256(bs.data)
		bs.sum = s[:]
	}
	return bs.want == nil || bytes.Equal(bs.sum, bs.want)
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
