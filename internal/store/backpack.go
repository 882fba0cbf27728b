// Package store owns a backpack directory. A Backpack is the single writer
// of its files: it holds the events.ndjson lock (log.Appender), appends
// signed events, keeps the reducer state current incrementally, and
// rebuilds the derived files (manifest.json, merkle_root.txt, manifest.sig,
// the state cache) after every write, crash-safely.
//
// The log is the source of truth; everything else is derived from it and
// rebuilt when found stale, so a crash at any point loses at most the
// derived files' freshness, never an event.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/scan"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/reducer"
)

// Errors callers branch on.
var (
	ErrNotBackpack  = errors.New("store: not a backpack (no identity/genesis.json)")
	ErrLocked       = bplog.ErrLocked
	ErrNoKey        = errors.New("store: no signing key for this backpack")
	ErrReadOnly     = errors.New("store: backpack opened read-only")
	ErrPrevMismatch = errors.New("store: prev_event_hash is not the actor's head")
)

// Options configures Open.
type Options struct {
	// ReadOnly opens without the lock and never writes (state, log,
	// status). A read-only Backpack may see a log another process is
	// appending to; it reads what was there when it opened.
	ReadOnly bool
	// KeyFile is the device key file. When empty, Open looks for
	// $BACKPACK_KEY, then DefaultKeyPath(uid), then a reference-made
	// identity/private_keys.json; writing needs a key.
	KeyFile string
	// Actor overrides the actor label the device writes as.
	Actor string
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// Logger receives repairs and cache decisions (default discards).
	Logger *slog.Logger
	// LockWait is how long Open waits for the writer lock while another
	// process holds it (an agent's pass, another command) before it gives
	// up with bplog.ErrLocked; 0 does not wait.
	LockWait time.Duration
	// Progress, when set, hears how a long ingest (an import or merge of
	// at least progressMin events) is going, a few times a second, from
	// another goroutine; it must return quickly.
	Progress func(Progress)
	// DeferState leaves the reducer state read from the state cache
	// undecoded until something needs it: for a merge, which replays
	// from a snapshot anyway when it reorders the log. Until then the
	// Backpack publishes no Snapshot.
	DeferState bool
	// KeepLog keeps the log's bytes that the open reads in memory, for as
	// long as nothing changes the log: a one-shot merge compares them with
	// the other log and rewrites from them instead of reading the file
	// again. It costs the log's size in memory.
	KeepLog bool
	// CacheEvery refreshes the state cache once this many events were
	// appended since it was written (default 2000), or a tenth of the
	// log, whichever is more: rewriting the cache costs time in the size
	// of the backpack, replaying a tail costs time in the tail.
	CacheEvery int
}

// Head is an actor's newest event and chain length.
type Head struct {
	ID     string `json:"head"`
	Events int    `json:"events"`
}

// BadLine is a line of the log that could not be used.
type BadLine struct {
	Line   int    `json:"line"`
	Offset int64  `json:"offset"`
	Reason string `json:"reason"`
}

// Snapshot is an immutable view of the backpack after a write. Readers
// take it with Backpack.Snapshot and never lock.
type Snapshot struct {
	UID         string
	EventCount  int    // entries the reducer counted
	LastEventID string // canonical text of metadata.last_event_id
	MerkleRoot  string
	LogSize     int64
	Heads       map[string]Head
	BadLines    []BadLine
}

// Backpack is an open backpack. Its methods are safe for concurrent use.
type Backpack struct {
	dir  string
	opts Options
	log  *slog.Logger
	app  *bplog.Appender // nil when read-only
	uid  string

	// mu serializes writes and guards the fields below.
	mu         sync.Mutex
	reg        *bplog.Registry
	signer     *bplog.Signer
	actor      string
	state      *reducer.State
	pending    *pendingState // the state, not decoded yet (state is nil)
	heads      map[string]Head
	logHash    *logHasher // SHA-256 of events.ndjson[0:logSize]
	logSize    int64
	lines      int // number of the last line read
	entries    int // JSON values (objects or not) in the log
	badLines   []BadLine
	cacheSize  int64 // log offset the state cache file covers
	sinceCache int
	files      fileCache
	index      *logIndex // every event of the log, for ingest; nil until needed
	// keysChanged: a KEY_PROMOTION changed keys.json; the quarantine
	// should be retried.
	keysChanged bool
	// maxKey is the largest (timestamp_utc, event_id) key in the log, so
	// that an append can tell cheaply whether it keeps the log in the
	// merge order; maxKeyKnown is false when a cache without it was used.
	maxKey      bplog.OrderItem
	maxKeyKnown bool
	// indexScanned: the index was built by reading the whole log (not
	// taken from the cache), so Close should save it.
	indexScanned bool
	// base is the reducer state at a line boundary some way back from the
	// end of the log, so that a merge that reorders only the log's recent
	// tail replays from there instead of from the start (nil: none).
	base *baseState
	// The log's first cleanLines lines, its first cleanOffset bytes, are
	// exactly the index's first cleanLines events, each as its canonical
	// line and one LF, no event twice: what a rewrite of the log would
	// write for them. A merge that keeps them in place keeps those bytes
	// without looking at them again.
	cleanLines  int
	cleanOffset int64
	// logBytes is the log's first len(logBytes) bytes (Options.KeepLog);
	// they are the whole log while len(logBytes) == logSize.
	logBytes []byte
	// cacheSumNote is cache.sum as last read or written.
	cacheSumNote []byte
	// tailKeyEvents are the KEY_PROMOTION events read from the log past
	// the state cache, for catchUpKeysLocked.
	tailKeyEvents []*bplog.Event
	// released is set between Release and Reacquire.
	released *released

	snap atomic.Pointer[Snapshot]
}

// Open opens the backpack in dir.
func Open(ctx context.Context, dir string, opts Options) (*Backpack, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CacheEvery <= 0 {
		opts.CacheEvery = 2000
	}
	b := &Backpack{dir: dir, opts: opts, log: opts.Logger, heads: map[string]Head{}}
	t0 := time.Now()
	defer func() { b.log.Debug("open", "took", time.Since(t0)) }()
	gen, err := ReadGenesis(dir)
	if err != nil {
		return nil, err
	}
	b.uid = gen.UID
	if err := b.loadKeys(); err != nil {
		return nil, err
	}
	if !opts.ReadOnly {
		if err := b.openAppenderWaiting(ctx, b.opts.LockWait); err != nil {
			return nil, err
		}
		if err := b.settleRewriteJournal(); err != nil {
			b.Close()
			return nil, err
		}
		if err := b.settleJournal(); err != nil {
			b.Close()
			return nil, err
		}
		b.cleanTemps()
	}
	if err := b.loadSigner(); err != nil && !errors.Is(err, ErrNoKey) {
		b.Close()
		return nil, err
	}
	if err := b.load(ctx); err != nil {
		b.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		if err := b.catchUpKeysLocked(); err != nil {
			b.Close()
			return nil, err
		}
		b.loadCacheSum()
		if err := b.refreshDerivedIfStale(); err != nil {
			b.Close()
			return nil, err
		}
		b.noteCacheSum()
	}
	if err := b.publishLocked(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// catchUpKeysLocked applies to identity/keys.json the KEY_PROMOTION
// events read from the log past the state cache: a writer that crashed
// between appending such an event and updating keys.json left it behind
// (the cache is written only after keys.json). Each event must verify
// against the keys trusted when its turn comes, so that a line some other
// program appended cannot make itself trusted. Applying is idempotent.
func (b *Backpack) catchUpKeysLocked() error {
	evs := b.tailKeyEvents
	b.tailKeyEvents = nil
	for _, e := range evs {
		pub, err := b.reg.Resolve(e.KeyID)
		if err != nil {
			continue
		}
		if _, _, err := e.CheckID(); err != nil {
			continue
		}
		if e.VerifySignature(pub) != nil {
			continue
		}
		changed, err := b.applyKeyEventsLocked([]*bplog.Event{e})
		if err != nil {
			return err
		}
		if changed {
			b.log.Info("identity/keys.json caught up with a key event in the log", "event", e.ID)
			b.keysChanged = true
		}
	}
	return nil
}

// noteKey keeps maxKey up to date.
func (b *Backpack) noteKey(e *bplog.Event) {
	if it := e.Item(); bplog.CompareKey(it, b.maxKey) > 0 {
		b.maxKey = it
	}
}

// Close writes the state cache when the log has at least minCacheEntries
// entries and the tail not in the cache yet is at least minCacheTail
// events and a twentieth of the log (so that a small import into a large
// backpack does not rewrite the whole cache; the next open replays the
// tail instead).
const (
	minCacheEntries = 1000
	minCacheTail    = 256
)

// Close releases the lock. It writes the state cache first if it is
// behind and the backpack is writable.
func (b *Backpack) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t0 := time.Now()
	defer func() { b.log.Debug("close", "took", time.Since(t0)) }()
	if b.app == nil {
		return nil
	}
	var err error
	// Small logs replay in a blink; a cache pays off from a thousand
	// events on, and rewriting it for a short tail costs more than
	// replaying the tail at the next open.
	// Also when this process had to scan the whole log for its index: the
	// next one will find the index in the cache.
	if b.cacheDueLocked() {
		err = b.writeCacheLocked()
		if err == nil {
			err = b.writeDerivedLocked()
		}
	}
	if cerr := b.app.Close(); err == nil {
		err = cerr
	}
	b.app = nil
	return err
}

// cacheDueLocked reports whether the state cache should be written before
// the lock is given up.
func (b *Backpack) cacheDueLocked() bool {
	return (b.sinceCache >= max(minCacheTail, b.entries/20) || b.indexScanned) && (b.state != nil || b.pending != nil) && b.entries >= minCacheEntries
}

// writableLocked returns why the backpack cannot be written, or nil.
func (b *Backpack) writableLocked() error {
	switch {
	case b.released != nil:
		return ErrReleased
	case b.app == nil:
		return ErrReadOnly
	}
	return nil
}

// Dir returns the backpack's directory.
func (b *Backpack) Dir() string { return b.dir }

// UID returns the backpack's uid from genesis.json.
func (b *Backpack) UID() string { return b.uid }

// Snapshot returns the latest published snapshot.
func (b *Backpack) Snapshot() *Snapshot { return b.snap.Load() }

// Actor returns the label the device writes as ("" without a key).
func (b *Backpack) Actor() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.actor
}

// Signer returns the device key's id ("" without a key).
func (b *Backpack) KeyID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.signer == nil {
		return ""
	}
	return b.signer.KeyID
}

// StateHash returns the reducer's state_hash. It hashes the canonical
// state (cached per entry by the reducer, so only changed entries are
// re-encoded), which costs time proportional to the state's size; appends
// therefore do not compute it, readers ask for it when they need it.
func (b *Backpack) StateHash() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.stateLocked()
	if err != nil {
		return "", err
	}
	return st.StateHash()
}

// SigningKey returns the device key (ErrNoKey without one).
func (b *Backpack) SigningKey() (bplog.PrivateKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.signer == nil {
		return bplog.PrivateKey{}, ErrNoKey
	}
	return bplog.PrivateKey{ID: b.signer.KeyID, Key: b.signer.Key}, nil
}

// Registry returns the key registry.
func (b *Backpack) Registry() *bplog.Registry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reg
}

// WithState calls fn with the current reducer state under the write lock;
// fn must not keep it.
func (b *Backpack) WithState(fn func(*reducer.State) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.stateLocked()
	if err != nil {
		return err
	}
	return fn(st)
}

func (b *Backpack) path(rel string) string { return filepath.Join(b.dir, filepath.FromSlash(rel)) }

func (b *Backpack) loadKeys() error {
	data, err := os.ReadFile(b.path(KeysPath))
	if err != nil {
		return fmt.Errorf("read %s: %w", KeysPath, err)
	}
	reg, err := bplog.ParseRegistry(data)
	if err != nil {
		return err
	}
	b.reg = reg
	return nil
}

func (b *Backpack) openAppender() error {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return err
	}
	app, rep, err := bplog.OpenAppender(b.path(EventsPath), bplog.AppenderOptions{
		SaveTorn: func(off int64, tail []byte) error {
			q := filepath.Join(dev, "quarantine")
			if err := os.MkdirAll(q, 0o700); err != nil {
				return err
			}
			name := fmt.Sprintf("torn-%d-%s.bin", off, b.opts.Now().UTC().Format("20060102T150405Z"))
			return writeFileAtomic(filepath.Join(q, name), tail, 0o600)
		},
	})
	if err != nil {
		return err
	}
	if rep != nil {
		if rep.Completed {
			b.log.Warn("events.ndjson: added the missing newline after the last line", "offset", rep.Offset)
		} else {
			b.log.Warn("events.ndjson: cut a torn last line left by an interrupted write; its bytes are kept in the quarantine",
				"offset", rep.Offset, "bytes", len(rep.Tail), "quarantine", filepath.Join(dev, "quarantine"))
		}
	}
	b.app = app
	return nil
}

// openAppenderWaiting is openAppender, retried while another process
// holds the lock, for up to wait.
func (b *Backpack) openAppenderWaiting(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	pause := 10 * time.Millisecond
	for {
		err := b.openAppender()
		if !errors.Is(err, bplog.ErrLocked) || time.Now().Add(pause).After(deadline) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		pause = min(pause*2, 250*time.Millisecond)
	}
}

// cleanTemps removes temp files an interrupted writeFileAtomic left, which
// would otherwise show up as phantom files in the manifest.
func (b *Backpack) cleanTemps() {
	for _, d := range []string{".", "events", "state", "identity", CheckpointsDir} {
		ents, _ := os.ReadDir(b.path(d))
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") {
				os.Remove(filepath.Join(b.path(d), n))
			}
		}
	}
}

// readersWait bounds how long a read of the log waits while another
// writer rewrites its tail in place (log.LockShared).
const readersWait = 30 * time.Second

// load brings the reducer state and heads up to the end of the log, from
// the state cache when it matches the log's prefix, else by replay.
func (b *Backpack) load(ctx context.Context) error {
	f, err := bplog.OpenShared(ctx, b.path(EventsPath), readersWait)
	if err != nil {
		return err
	}
	defer f.Close()
	b.logHash = newLogHasher()
	b.logBytes = nil
	// The log's prefix is hashed while the cache decodes.
	var pre *prefixHash
	c, err := b.readCache(func(off int64) { pre = hashPrefix(f, off, b.opts.KeepLog) })
	if err != nil && pre != nil {
		<-pre.done // f is closed on return
	}
	if err == nil {
		if ok, err := b.prefixMatches(f, c, pre); err != nil {
			return err
		} else if ok {
			b.applyCache(c)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		if errors.Is(err, errCacheVersion) {
			b.log.Info("state cache written by another version; replaying the log once")
		} else {
			b.log.Warn("state cache unusable; replaying the log", "err", err)
		}
	}
	if b.state == nil && b.pending == nil {
		if err := b.resumeFromCheckpoint(f); err != nil {
			return err
		}
	}
	if b.state == nil && b.pending == nil {
		b.index, b.indexScanned = nil, false
		b.maxKey, b.maxKeyKnown = bplog.OrderItem{}, true
		b.state = reducer.New()
		b.logHash.Reset()
		b.logSize, b.lines, b.entries, b.cacheSize = 0, 0, 0, -1
		b.cleanLines, b.cleanOffset = 0, 0
		b.heads = map[string]Head{}
		b.badLines = nil
		b.base = nil
		if b.opts.KeepLog {
			b.logBytes = []byte{}
		}
	}
	return b.scanTailLocked(ctx, f)
}

// scanTailLocked absorbs the log from b.logSize to its end: the reducer,
// heads and index follow, and b.logHash covers the whole file after it.
func (b *Backpack) scanTailLocked(ctx context.Context, f *os.File) error {
	if _, err := f.Seek(b.logSize, io.SeekStart); err != nil {
		return err
	}
	var tail io.Reader = io.TeeReader(f, b.logHash)
	if b.logBytes != nil && int64(len(b.logBytes)) == b.logSize {
		tail = io.TeeReader(tail, (*appendBuffer)(&b.logBytes))
	} else {
		b.logBytes = nil
	}
	n := 0
	target, size := int64(math.MaxInt64), int64(0)
	if st, err := f.Stat(); err == nil {
		target, size = baseTarget(st.Size()), st.Size()
	}
	err := scan.Run(ctx, tail, scan.Options{Offset: b.logSize, FirstLine: b.lines + 1, Hashes: b.index != nil}, func(it *scan.Item) error {
		b.maybeBaseLocked(it.Offset, it.Number-1, b.entries, target, size)
		b.absorbLocked(it)
		n++
		return nil
	})
	if err != nil {
		return err
	}
	// The tee saw every byte up to EOF.
	st, err := f.Stat()
	if err != nil {
		return err
	}
	b.logSize = st.Size()
	if b.app != nil && b.app.Size() != b.logSize {
		return fmt.Errorf("store: events.ndjson changed while opening (size %d, then %d)", b.logSize, b.app.Size())
	}
	if int64(len(b.logBytes)) != b.logSize {
		b.logBytes = nil
	}
	b.sinceCache += n
	return nil
}

// absorbLocked applies one scanned line: the reducer sees every JSON
// value (as the reference's does); heads follow every event with an actor.
func (b *Backpack) absorbLocked(it *scan.Item) {
	b.lines = it.Number
	if it.Err != nil {
		b.badLines = append(b.badLines, BadLine{Line: it.Number, Offset: it.Offset, Reason: it.Err.Error()})
		return
	}
	if b.pending != nil {
		b.pending.tail = append(b.pending.tail, it.Value)
	} else {
		b.state.Apply(it.Value)
	}
	b.entries++
	if e := it.Event; e != nil && e.Actor != "" && e.ID != "" {
		h := b.heads[e.Actor]
		b.heads[e.Actor] = Head{ID: e.ID, Events: h.Events + 1}
		b.noteKey(e)
		if b.index != nil && it.EventErr == nil && it.EncodeErr == nil {
			c := cleanPrefix{lines: b.cleanLines, offset: b.cleanOffset}
			c.note(it, b.index.add(e, it.Hash), len(b.index.items))
			b.cleanLines, b.cleanOffset = c.lines, c.offset
		}
		if e.Type == KeyPromotionType && it.EventErr == nil {
			b.tailKeyEvents = append(b.tailKeyEvents, e)
		}
	}
}

func (b *Backpack) loadSigner() error {
	path := b.opts.KeyFile
	if path == "" {
		path = os.Getenv("BACKPACK_KEY")
	}
	if path == "" {
		path = boundKeyFile(b.uid, b.dir)
	}
	if path == "" {
		if p, err := DefaultKeyPath(b.uid); err == nil {
			if _, err := os.Stat(p); err == nil {
				path = p
			}
		}
	}
	if path == "" {
		if _, err := os.Stat(b.path(PrivateKeysPath)); err == nil {
			path = b.path(PrivateKeysPath)
		}
	}
	if path == "" {
		return ErrNoKey
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read key file: %w", err)
	}
	kf, err := bplog.ParseKeyFile(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Use the first key the backpack trusts and has not revoked.
	for _, k := range kf.Keys {
		if _, err := b.reg.Resolve(k.ID); err == nil {
			s := k.Signer()
			b.signer = &s
			b.actor = kf.Actor
			if b.opts.Actor != "" {
				b.actor = b.opts.Actor
			}
			if b.actor == "" {
				b.actor = "backpack_" + strings.TrimPrefix(k.ID, bplog.KeyIDPrefix)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: none of the keys in %s is an active key of identity/keys.json", ErrNoKey, path)
}

// Append signs body with the device key and appends it. body is an event
// without event_id, sig and actor_key_id; actor defaults to the device's
// actor, prev_event_hash is set to that actor's head (a different value
// is refused with ErrPrevMismatch), timestamp_utc defaults to now.
func (b *Backpack) Append(body canon.Value) (*bplog.Event, error) {
	evs, err := b.AppendBatch([]canon.Value{body})
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// AppendBatch appends several events in one write and one rebuild.
func (b *Backpack) AppendBatch(bodies []canon.Value) ([]*bplog.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.appendBatchLocked(bodies)
}

func (b *Backpack) appendBatchLocked(bodies []canon.Value) ([]*bplog.Event, error) {
	if err := b.writableLocked(); err != nil {
		return nil, err
	}
	if b.signer == nil {
		return nil, ErrNoKey
	}
	heads := map[string]Head{}
	head := func(a string) Head {
		if h, ok := heads[a]; ok {
			return h
		}
		return b.heads[a]
	}
	var evs []*bplog.Event
	var lines [][]byte
	for _, body := range bodies {
		if body.Kind() != canon.Object {
			return nil, bplog.ErrNotObject
		}
		actor := b.actor
		if a := body.Field("actor"); a.Kind() == canon.String && a.Str() != "" {
			actor = a.Str()
		}
		h := head(actor)
		prev := canon.NullValue()
		if h.ID != "" {
			prev = canon.StringValue(h.ID)
		}
		if p, ok := body.Get("prev_event_hash"); ok && !canon.Equal(p, prev) {
			return nil, fmt.Errorf("%w: actor %q is at %s", ErrPrevMismatch, actor, canon.MustEncode(prev))
		}
		body = body.With("actor", canon.StringValue(actor)).With("prev_event_hash", prev)
		if !body.Has("timestamp_utc") {
			body = body.With("timestamp_utc", canon.StringValue(pytime.FormatUTC(b.opts.Now())))
		}
		e, line, err := b.signer.Seal(body)
		if err != nil {
			return nil, err
		}
		heads[actor] = Head{ID: e.ID, Events: h.Events + 1}
		evs = append(evs, e)
		lines = append(lines, line)
	}
	items := make([]bplog.OrderItem, len(evs))
	for i, e := range evs {
		items[i] = e.Item()
	}
	if _, ok := bplog.AppendsAfter(b.maxKey, items); !ok || !b.maxKeyKnown {
		// The device's clock is behind the log (or the log's order is not
		// known): merge, as events from elsewhere are merged, so that
		// every replica keeps the same order.
		if err := b.mergeOwnLocked(lines, evs); err != nil {
			return nil, err
		}
		return evs, nil
	}
	if err := b.appendLinesLocked(lines, evs); err != nil {
		return nil, err
	}
	if b.index != nil {
		for i, e := range evs {
			b.index.add(e, sha256.Sum256(lines[i]))
		}
	}
	return evs, nil
}

// appendLinesLocked appends canonical event lines, applies them and
// rebuilds the derived files.
func (b *Backpack) appendLinesLocked(lines [][]byte, evs []*bplog.Event) error {
	// A deferred state is decoded first, so that nothing can fail once
	// the lines are written.
	st, err := b.stateLocked()
	if err != nil {
		return err
	}
	// A batch of several lines is journaled: a process killed in the
	// middle of the write can leave part of it (the kernel stops a large
	// write at a fatal signal), and the next writer then cuts the part
	// off, so that a batch is in the log whole or not at all.
	journal := len(lines) > 1
	if journal {
		n := 0
		for _, l := range lines {
			n += len(l) + 1
		}
		if err := b.writeJournal(b.app.Size(), int64(n)); err != nil {
			return err
		}
	}
	if err := b.app.Write(lines...); err != nil {
		return err
	}
	// The log's fsync runs while the derived files are rebuilt and their
	// own fsyncs run; the append is reported only once the log is durable.
	synced := make(chan error, 1)
	go func() { synced <- b.app.Sync() }()
	clean := b.cleanOffset == b.logSize && b.cleanLines == b.lines
	b.logBytes = nil
	for i, l := range lines {
		b.logHash.Write(l)
		b.logHash.Write([]byte{'\n'})
		b.logSize += int64(len(l)) + 1
		b.lines++
		b.entries++
		st.Apply(evs[i].Value)
		h := b.heads[evs[i].Actor]
		b.heads[evs[i].Actor] = Head{ID: evs[i].ID, Events: h.Events + 1}
		b.noteKey(evs[i])
	}
	if clean {
		// Canonical lines of events the log does not hold.
		b.cleanLines, b.cleanOffset = b.lines, b.logSize
	}
	b.sinceCache += len(lines)
	if changed, err := b.applyKeyEventsLocked(evs); err != nil {
		b.log.Warn("keys.json not updated", "err", err)
	} else if changed {
		b.keysChanged = true
	}
	var derr error
	if b.sinceCache >= max(b.opts.CacheEvery, b.entries/10) {
		if err := b.writeCacheLocked(); err != nil {
			b.log.Warn("state cache not written", "err", err)
		}
	}
	derr = b.writeDerivedLocked()
	if err := <-synced; err != nil {
		// The lines are gone again; the in-memory state is not. Reload
		// everything from disk so memory and files agree.
		return b.reloadAfterFailureLocked(fmt.Errorf("events not written: %w", err))
	}
	if journal {
		b.clearJournal()
	}
	if derr != nil {
		return fmt.Errorf("events appended, but derived files not rebuilt (they will be on next open): %w", derr)
	}
	return b.publishLocked()
}

// appendBuffer is an io.Writer that appends to a byte slice.
type appendBuffer []byte

func (a *appendBuffer) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}

// keptLog returns the whole log's bytes if the store keeps them
// (Options.KeepLog), else nil.
func (b *Backpack) keptLog() []byte {
	if b.logBytes == nil || int64(len(b.logBytes)) != b.logSize {
		return nil
	}
	return b.logBytes
}

// reloadAfterFailureLocked rebuilds the in-memory state from the files
// after a failed write, and returns cause.
func (b *Backpack) reloadAfterFailureLocked(cause error) error {
	b.state, b.pending = nil, nil
	b.index = nil
	b.logSize, b.lines, b.entries, b.sinceCache = 0, 0, 0, 0
	b.cleanLines, b.cleanOffset = 0, 0
	if err := b.load(context.Background()); err != nil {
		return errors.Join(cause, fmt.Errorf("reload: %w", err))
	}
	if err := b.refreshDerivedIfStale(); err != nil {
		return errors.Join(cause, err)
	}
	return errors.Join(cause, b.publishLocked())
}

// pendingState is a reducer state still in the state cache's encoding
// (Options.DeferState), and the values read from the log past the cache,
// to apply once it is decoded.
type pendingState struct {
	data []byte
	tail []canon.Value
}

// stateLocked returns the reducer state, decoding a deferred one first
// (and applying the log values read past the cache to it).
func (b *Backpack) stateLocked() (*reducer.State, error) {
	if p := b.pending; p != nil {
		t0 := time.Now()
		st, err := decodeReducer(p.data)
		if err != nil {
			return nil, fmt.Errorf("store: state cache: %w (remove %s to replay the log)", err, CachePath)
		}
		for _, v := range p.tail {
			st.Apply(v)
		}
		b.state, b.pending = st, nil
		b.log.Debug("state: decoded from the cache when first needed", "took", time.Since(t0))
		if err := b.publishLocked(); err != nil {
			return nil, err
		}
	}
	return b.state, nil
}

// publishLocked publishes a new Snapshot.
func (b *Backpack) publishLocked() error {
	if b.state == nil {
		return nil // DeferState: published once the state is decoded
	}
	heads := make(map[string]Head, len(b.heads))
	for k, v := range b.heads {
		heads[k] = v
	}
	last, _ := canon.Encode(b.state.LastEventID())
	root := ""
	if data, err := os.ReadFile(b.path(MerkleRootPath)); err == nil {
		root = strings.TrimSpace(string(data))
	}
	b.snap.Store(&Snapshot{
		UID:         b.uid,
		EventCount:  int(b.state.EventCount()),
		LastEventID: string(last),
		MerkleRoot:  root,
		LogSize:     b.logSize,
		Heads:       heads,
		BadLines:    append([]BadLine(nil), b.badLines...),
	})
	return nil
}

// logDigest returns SHA-256 of the whole log (Sum leaves the running
// hash as it is).
func (b *Backpack) logDigest() string {
	return fmt.Sprintf("%x", b.logHash.Sum(nil))
}

// Heads returns every actor's head, sorted by actor.
func (s *Snapshot) SortedActors() []string {
	out := make([]string, 0, len(s.Heads))
	for a := range s.Heads {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
