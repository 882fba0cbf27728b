package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/scan"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/reducer"
)

// Ingest is the one way signed events from elsewhere (a bundle, another
// replica, a peer) enter a backpack. Each event is checked in a fixed
// order: it parses and is canonical, its event_id matches its content, its
// signature verifies with a key identity/keys.json trusts, and its
// predecessor is held. Then:
//
//   - an event already held with the same bytes is a duplicate (nothing
//     happens, so ingesting twice changes nothing);
//   - an event whose key is not trusted waits in the quarantine, with the
//     reason, until the key is trusted or the user drops it;
//   - an event whose predecessor is missing waits as pending, and is
//     applied once the predecessor arrives;
//   - an event that is invalid (bad id, bad signature, not an event) is
//     rejected, with the reason, and kept in the quarantine;
//   - two different events after one predecessor, or one event_id with two
//     contents, are a fork: both signed events are kept as evidence.
//
// Accepted events are merged in the documented total order (log.MergeOrder):
// appended when they all sort after the log's current events, otherwise
// the log is rewritten through a temp file and rename.

// IngestResult reports what Ingest did with each event.
type IngestResult struct {
	Source      string          `json:"source"`
	Received    int             `json:"received"`
	Applied     []string        `json:"applied"`
	Duplicates  int             `json:"duplicates"`
	Quarantined []HeldEvent     `json:"quarantined"`
	Pending     []HeldEvent     `json:"pending"`
	Rejected    []HeldEvent     `json:"rejected"`
	Forks       []bplog.Fork    `json:"forks"`
	Rewrote     bool            `json:"rewrote_log"`
	Missing     map[string]Need `json:"missing,omitempty"`
}

// HeldEvent is an event Ingest did not apply, and why.
type HeldEvent struct {
	EventID string `json:"event_id,omitempty"`
	Actor   string `json:"actor,omitempty"`
	KeyID   string `json:"key_id,omitempty"`
	Reason  string `json:"reason"`
	Source  string `json:"source,omitempty"`
	Line    string `json:"line"`
}

// Need says what a pending actor waits for: the events after After (the
// newest of its events this replica holds, "" for none) that lead to the
// pending ones.
type Need struct {
	After   string `json:"after"`
	Pending int    `json:"pending"`
}

func (n Need) String(actor string) string {
	after := n.After
	if after == "" {
		after = "the start of its chain"
	}
	return fmt.Sprintf("actor %s: need events after %s (%d events waiting)", actor, after, n.Pending)
}

// logIndex describes every event of the log, for dedup, forks and the
// merge order, in file order. Built on first use by scanning the log, or
// read from the state cache and completed by the tail.
type logIndex struct {
	byID     map[string]int // event id -> position in items
	items    []bplog.OrderItem
	actors   []string
	hashes   [][32]byte
	children map[childRef]string // first child id of each (actor, prev)
	// chains holds each actor's events as positions in items, in order;
	// nil until actorChains builds it, then kept up to date.
	chains map[string][]int
}

// actorChains returns each actor's events as positions in items.
func (x *logIndex) actorChains() map[string][]int {
	if x.chains == nil {
		x.chains = map[string][]int{}
		for i, a := range x.actors {
			x.chains[a] = append(x.chains[a], i)
		}
	}
	return x.chains
}

func newLogIndex() *logIndex {
	return &logIndex{byID: map[string]int{}, children: map[childRef]string{}}
}

// newLogIndexSized returns an empty index with room for n events.
func newLogIndexSized(n int) *logIndex {
	return &logIndex{byID: make(map[string]int, n), children: make(map[childRef]string, n),
		items: make([]bplog.OrderItem, 0, n), actors: make([]string, 0, n), hashes: make([][32]byte, 0, n)}
}

// childRef names a position in an actor's chain: the events that follow
// prev.
type childRef struct{ actor, prev string }

func childKey(actor, prev string) childRef { return childRef{actor, prev} }

// holdsLine reports whether line is, byte for byte, the canonical line of
// an event the index holds, without parsing it: the event id is found by
// a plain search and the line's hash compared with the held line's. A
// line this cannot match (not canonical, or "event_id" found elsewhere
// first) is simply not matched here, and goes through the full checks.
// It returns the item's position, or -1.
func (x *logIndex) holdsLine(line []byte) int {
	id, ok := quickEventID(line)
	if !ok {
		return -1
	}
	// The id first: a line the index does not hold costs no hash.
	if i, ok := x.byID[string(id)]; ok && x.hashes[i] == sha256.Sum256(line) {
		return i
	}
	return -1
}

// holdsHashed is holdsLine for a line whose quick id and hash are known.
func (x *logIndex) holdsHashed(id []byte, hash [32]byte) int {
	if i, ok := x.byID[string(id)]; ok && x.hashes[i] == hash {
		return i
	}
	return -1
}

// quickEventID returns the value of the first "event_id" member in a
// canonical event line (where it is a plain string), without parsing the
// line. It is a hint: callers confirm it by the line's hash.
func quickEventID(line []byte) ([]byte, bool) {
	const key = `"event_id":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return nil, false
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 128 {
		return nil, false
	}
	return rest[:j], true
}

// add records an event and reports whether it did; an id already held
// is ignored.
func (x *logIndex) add(e *bplog.Event, hash [32]byte) bool {
	return x.addItem(e.Item(), e.Actor, hash)
}

func (x *logIndex) addItem(it bplog.OrderItem, actor string, hash [32]byte) bool {
	x.ensureMaps()
	if _, dup := x.byID[it.ID]; dup {
		return false
	}
	x.byID[it.ID] = len(x.items)
	if x.chains != nil {
		x.chains[actor] = append(x.chains[actor], len(x.items))
	}
	x.items = append(x.items, it)
	x.actors = append(x.actors, actor)
	x.hashes = append(x.hashes, hash)
	k := childKey(actor, it.Prev)
	if _, ok := x.children[k]; !ok {
		x.children[k] = it.ID
	}
	return true
}

// cleanPrefix follows, line by line, how far a log is clean (see
// Backpack.cleanLines).
type cleanPrefix struct {
	lines  int
	offset int64
}

// note extends the clean prefix by the scanned line it, which holds an
// event that the index added (or not: a repeat) as its items'th.
func (c *cleanPrefix) note(it *scan.Item, added bool, items int) {
	if added && it.Exact && it.Canonical && c.offset == it.Offset && c.lines == it.Number-1 && c.lines == items-1 {
		c.lines, c.offset = it.Number, it.End
	}
}

// appendUnique adds an event known not to be in x yet, without touching
// the lookup maps (which must not be built yet): for building an index in
// bulk.
func (x *logIndex) appendUnique(it bplog.OrderItem, actor string, hash [32]byte) {
	if x.chains != nil {
		x.chains[actor] = append(x.chains[actor], len(x.items))
	}
	x.items = append(x.items, it)
	x.actors = append(x.actors, actor)
	x.hashes = append(x.hashes, hash)
}

// buildMaps builds the lookup maps of an index built in bulk, the two on
// two cores.
func (x *logIndex) buildMaps() {
	byID := make(map[string]int, len(x.items))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, it := range x.items {
			if _, dup := byID[it.ID]; !dup {
				byID[it.ID] = i
			}
		}
	}()
	children := make(map[childRef]string, len(x.items))
	for i, it := range x.items {
		k := childKey(x.actors[i], it.Prev)
		if _, ok := children[k]; !ok {
			children[k] = it.ID
		}
	}
	<-done
	x.byID, x.children = byID, children
}

// ensureMaps builds the lookup maps of an index built in bulk.
func (x *logIndex) ensureMaps() {
	if x.byID != nil {
		return
	}
	x.byID = make(map[string]int, len(x.items))
	x.children = make(map[childRef]string, len(x.items))
	for i, it := range x.items {
		if _, dup := x.byID[it.ID]; !dup {
			x.byID[it.ID] = i
		}
		k := childKey(x.actors[i], it.Prev)
		if _, ok := x.children[k]; !ok {
			x.children[k] = it.ID
		}
	}
}

// indexLocked returns the log index, building it if needed.
func (b *Backpack) indexLocked(ctx context.Context) (*logIndex, error) {
	if b.index != nil {
		b.index.ensureMaps()
		return b.index, nil
	}
	x := newLogIndex()
	f, err := os.Open(b.path(EventsPath))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	clean := cleanPrefix{}
	err = scan.Run(ctx, f, scan.Options{Hashes: true}, func(it *scan.Item) error {
		if it.Event != nil && it.EventErr == nil && it.EncodeErr == nil {
			clean.note(it, x.add(it.Event, it.Hash), len(x.items))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.cleanLines, b.cleanOffset = clean.lines, clean.offset
	b.index = x
	b.indexScanned = true
	return x, nil
}

// Progress is how far a long ingest got: Phase "checking" (Done of Total
// events checked: id, signature, chain) then "writing" (Total events being
// merged into the log; Done equals Total).
type Progress struct {
	Source string
	Phase  string
	Done   int
	Total  int
}

// progressMin is the smallest ingest that reports progress.
const progressMin = 2000

// reportProgress calls opts.Progress with done's value every 200 ms until
// the returned stop is called (which reports the last value), when there
// is a callback and total is at least progressMin.
func (b *Backpack) reportProgress(source, phase string, total int, done *atomic.Int64) (stop func()) {
	fn := b.opts.Progress
	if fn == nil || total < progressMin {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fn(Progress{Source: source, Phase: phase, Done: int(done.Load()), Total: total})
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
		fn(Progress{Source: source, Phase: phase, Done: int(done.Load()), Total: total})
	}
}

// candidate is an event under consideration.
type candidate struct {
	e      *bplog.Event
	line   []byte // canonical
	hash   [32]byte
	source string
}

// Ingest checks and merges lines (one signed event each) from source.
func (b *Backpack) Ingest(ctx context.Context, lines [][]byte, source string) (*IngestResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ingestLocked(ctx, lines, source, nil)
}

// Prepared is a batch of incoming lines with what can be learned of them
// before the backpack is open (Prepare).
type Prepared struct {
	data   []byte     // the log the lines are from (PrepareLog)
	lines  [][]byte   // its non-blank lines, trimmed
	ids    [][]byte   // quickEventID of each line (nil: none, or not hashed)
	hashes [][32]byte // SHA-256 of each line
	held   int        // the first held lines are held by the backpack byte for byte, not hashed
}

// Prepare hashes lines for IngestPrepared, on every core. A merge runs it
// while the backpack opens: the lines the backpack already holds are then
// recognised without hashing them under the lock.
func Prepare(lines [][]byte) *Prepared {
	p := &Prepared{lines: lines}
	p.hashFrom(0)
	return p
}

// PrepareLog splits a whole log's bytes into its non-blank lines, by the
// reference's reading rules (an unusable line is an error), for
// IngestPrepared. It hashes nothing: IngestPrepared compares the log's
// bytes with those of a backpack opened with Options.KeepLog, and hashes
// only the lines after the first that differs.
func PrepareLog(data []byte) (*Prepared, error) {
	p := &Prepared{data: data}
	rd := bplog.NewReader(bytes.NewReader(data))
	for rd.Next() {
		l := rd.Line()
		if l.Err != nil {
			return nil, fmt.Errorf("line %d: %w", l.Number, l.Err)
		}
		// The line's text is its raw bytes without the whitespace around
		// them: found where it starts in them.
		raw := data[l.Offset:l.End]
		i := bytes.Index(raw, l.Text)
		if i < 0 {
			return nil, fmt.Errorf("bug: store: line %d not found in its bytes", l.Number)
		}
		p.lines = append(p.lines, raw[i:i+len(l.Text):i+len(l.Text)])
	}
	if err := rd.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// hashFrom hashes the lines from the from'th on, on every core.
func (p *Prepared) hashFrom(from int) {
	p.ids, p.hashes = make([][]byte, len(p.lines)), make([][32]byte, len(p.lines))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < len(p.lines); i += workers {
				t := bytes.TrimSpace(p.lines[i])
				if id, ok := quickEventID(t); ok {
					p.ids[i] = id
					p.hashes[i] = sha256.Sum256(t)
				}
			}
		}()
	}
	wg.Wait()
}

// IngestPrepared is Ingest of prepared lines.
func (b *Backpack) IngestPrepared(ctx context.Context, p *Prepared, source string) (*IngestResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.ids == nil {
		// Lines of a log that starts with the backpack's own clean
		// lines, byte for byte, are held: only the others are hashed.
		t0 := time.Now()
		p.held = 0
		// The index notes how far the log is clean.
		if _, err := b.indexLocked(ctx); err != nil {
			return nil, err
		}
		if local := b.keptLog(); local != nil && b.cleanOffset > 0 && b.cleanOffset <= int64(len(local)) {
			same := commonLinePrefix(local[:b.cleanOffset], p.data)
			p.held = bytes.Count(p.data[:same], []byte{'\n'})
		}
		p.hashFrom(p.held)
		b.log.Debug("ingest: compared with the log held", "lines", len(p.lines), "held", p.held, "took", time.Since(t0))
	}
	return b.ingestLocked(ctx, p.lines, source, p)
}

func (b *Backpack) ingestLocked(ctx context.Context, lines [][]byte, source string, pre *Prepared) (*IngestResult, error) {
	if err := b.writableLocked(); err != nil {
		return nil, err
	}
	res := &IngestResult{Source: source, Received: len(lines), Missing: map[string]Need{}}
	t0 := time.Now()
	x, err := b.indexLocked(ctx)
	if err != nil {
		return nil, err
	}
	held, err := b.loadHeldLocked("pending")
	if err != nil {
		return nil, err
	}

	// Check each event on its own, on every core (the checks only read the
	// index and the registry).
	type checked struct {
		c  *candidate
		he *HeldEvent
		at int // the held item the line is, byte for byte (-1: none)
	}
	all := make([][]byte, 0, len(held)+len(lines))
	srcs := make([]string, 0, len(held)+len(lines))
	for _, h := range held {
		all, srcs = append(all, []byte(h.Line)), append(srcs, h.Source)
	}
	for _, l := range lines {
		all, srcs = append(all, l), append(srcs, source)
	}
	results := make([]checked, len(all))
	var wg sync.WaitGroup
	var done atomic.Int64
	stop := b.reportProgress(source, "checking", len(all), &done)
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(all); i += workers {
				if j := i - len(held); pre != nil && j >= 0 && j < pre.held {
					results[i] = checked{nil, nil, -1}
					done.Add(1)
					continue
				}
				if j := i - len(held); pre != nil && j >= 0 && pre.ids[j] != nil {
					if at := x.holdsHashed(pre.ids[j], pre.hashes[j]); at >= 0 {
						results[i] = checked{nil, nil, at}
						done.Add(1)
						continue
					}
				}
				c, he, at := b.checkEvent(all[i], srcs[i], x)
				results[i] = checked{c, he, at}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	stop()
	b.log.Debug("ingest: index and checks", "lines", len(all), "took", time.Since(t0))
	// Held lines that arrived byte for byte (a merge brings a whole
	// log): should the log be rewritten, they are known without hashing
	// the old log's lines again.
	var known [][]byte
	for i, r := range results {
		if r.at >= 0 {
			if known == nil {
				known = make([][]byte, len(x.items))
			}
			known[r.at] = bytes.TrimSpace(all[i])
		}
	}

	var cands []*candidate
	seen := map[string]bool{}
	next := 0
	consider := func(line []byte, src string, wasPending bool) {
		r := results[next]
		next++
		c, he := r.c, r.he
		if c == nil && he == nil {
			if !wasPending {
				res.Duplicates++
			}
			return
		}
		if he != nil {
			switch {
			case he.Reason == reasonUntrusted:
				res.Quarantined = append(res.Quarantined, *he)
			default:
				res.Rejected = append(res.Rejected, *he)
			}
			return
		}
		if _, ok := x.byID[c.e.ID]; ok {
			// Held with other bytes (identical bytes were a duplicate in
			// checkEvent): the same event_id with two contents.
			res.Forks = append(res.Forks, bplog.Fork{Kind: bplog.ForkSameID, Actor: c.e.Actor, Prev: c.e.ID})
			b.keepForkEvidenceLocked(c)
			return
		}
		if seen[c.e.ID] {
			if !wasPending {
				res.Duplicates++
			}
			return
		}
		seen[c.e.ID] = true
		cands = append(cands, c)
	}
	for _, h := range held {
		consider([]byte(h.Line), h.Source, true)
	}
	for _, l := range lines {
		consider(l, source, false)
	}

	// Accept events whose predecessor is held (or accepted), to a fixpoint.
	accepted := map[string]*candidate{}
	var order []*candidate
	for progress := true; progress; {
		progress = false
		for _, c := range cands {
			if accepted[c.e.ID] != nil {
				continue
			}
			if c.e.HasPrev {
				if _, ok := x.byID[c.e.Prev]; !ok && accepted[c.e.Prev] == nil {
					continue
				}
			}
			accepted[c.e.ID] = c
			order = append(order, c)
			progress = true
		}
	}
	var pending []HeldEvent
	for _, c := range cands {
		if accepted[c.e.ID] != nil {
			continue
		}
		pending = append(pending, HeldEvent{EventID: c.e.ID, Actor: c.e.Actor, KeyID: c.e.KeyID, Source: c.source, Line: string(c.line),
			Reason: "predecessor " + c.e.Prev + " not held"})
		n := res.Missing[c.e.Actor]
		n.Pending++
		n.After = b.heads[c.e.Actor].ID
		res.Missing[c.e.Actor] = n
	}
	res.Pending = pending

	// Forks among the accepted: a second child of one predecessor, in
	// the log or in this batch.
	batchChild := map[childRef]string{}
	for _, c := range order {
		k := childKey(c.e.Actor, c.e.Prev)
		first, ok := x.children[k]
		if !ok {
			first, ok = batchChild[k]
		}
		if ok && first != c.e.ID {
			res.Forks = append(res.Forks, bplog.Fork{Kind: bplog.ForkSamePrev, Actor: c.e.Actor, Prev: c.e.Prev,
				Events: []bplog.ForkEvent{{EventID: first}, {EventID: c.e.ID}}})
		} else if !ok {
			batchChild[k] = c.e.ID
		}
	}

	if err := b.appendHeldLocked("quarantine", append(res.Quarantined, res.Rejected...)); err != nil {
		return nil, err
	}
	// The log is rewritten only when something new must go before
	// existing lines (a log that other tools left out of the merge order
	// is put in order then, with the new events).
	if len(order) > 0 {
		for _, c := range order {
			res.Applied = append(res.Applied, c.e.ID)
		}
		if b.opts.Progress != nil && len(all) >= progressMin {
			b.opts.Progress(Progress{Source: source, Phase: "writing", Done: len(order), Total: len(order)})
		}
		if err := b.mergeLocked(ctx, x, order, res, known); err != nil {
			b.index = nil // rebuilt from the file on next use
			return nil, err
		}
	}
	// Only now that the accepted events are in the log do they leave the
	// pending set: a crash in between leaves them pending, and the next
	// ingest finds them held and drops them then. Nothing is lost.
	if err := b.saveHeldLocked("pending", pending); err != nil {
		return nil, err
	}
	if err := b.recordForksLocked(res, order); err != nil {
		return res, fmt.Errorf("events merged, but the fork was not recorded: %w", err)
	}
	if b.keysChanged && source != "quarantine retry" {
		// A key became trusted: what waited for it may apply now.
		b.keysChanged = false
		retry, err := b.retryQuarantineLocked(ctx)
		if err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, retry.Applied...)
	}
	return res, nil
}

// ConflictType is the event type a device appends, once, when it learns of
// a fork (the reference's sync document describes it; the reference never
// writes it, and its reducer only counts it).
const ConflictType = "com.provara.sync.conflict"

// recordForksLocked keeps, for each new fork, a device-local record of the
// competing events and where each came from, and appends one signed
// com.provara.sync.conflict event to the device's own chain.
func (b *Backpack) recordForksLocked(res *IngestResult, order []*candidate) error {
	if len(res.Forks) == 0 {
		return nil
	}
	sources := map[string]string{}
	for _, c := range order {
		sources[c.e.ID] = c.source
	}
	dir, err := b.heldDir("forks")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var bodies []canon.Value
	for _, f := range res.Forks {
		ids := []string{f.Prev}
		if f.Kind == bplog.ForkSamePrev {
			ids = ids[:0]
			for _, e := range f.Events {
				ids = append(ids, e.EventID)
			}
		}
		sort.Strings(ids)
		key := sha256.Sum256([]byte(f.Kind + "\x00" + f.Actor + "\x00" + f.Prev + "\x00" + fmt.Sprint(ids)))
		rec := filepath.Join(dir, "fork-"+hex.EncodeToString(key[:12])+".json")
		if _, err := os.Stat(rec); err == nil {
			continue // recorded before: once per fork
		}
		var evs []canon.Value
		for _, id := range ids {
			var o canon.ObjectBuilder
			src := sources[id]
			if src == "" {
				src = "this replica (held before the fork was seen)"
			}
			o.Set("event_id", canon.StringValue(id)).Set("source", canon.StringValue(src))
			evs = append(evs, o.Value())
		}
		var r canon.ObjectBuilder
		r.Set("kind", canon.StringValue(f.Kind)).Set("actor", canon.StringValue(f.Actor)).
			Set("fork_point", canon.StringValue(f.Prev)).Set("events", canon.ArrayValue(evs...)).
			Set("detected_at_utc", canon.StringValue(pytime.FormatUTC(b.opts.Now())))
		if err := writeFileAtomic(rec, canon.MustEncode(r.Value()), 0o600); err != nil {
			return err
		}
		competing := make([]canon.Value, len(ids))
		for i, id := range ids {
			competing[i] = canon.StringValue(id)
		}
		var p, body canon.ObjectBuilder
		conflictType := "CAUSAL_FORK"
		if f.Kind == bplog.ForkSameID {
			conflictType = "EVENT_ID_COLLISION"
		}
		p.Set("conflict_type", canon.StringValue(conflictType)).Set("actor_id", canon.StringValue(f.Actor)).
			Set("fork_point_id", canon.StringValue(f.Prev)).Set("competing_event_ids", canon.ArrayValue(competing...))
		body.Set("type", canon.StringValue(ConflictType)).Set("payload", p.Value())
		bodies = append(bodies, body.Value())
	}
	if len(bodies) == 0 || b.signer == nil {
		return nil
	}
	_, err = b.appendBatchLocked(bodies)
	return err
}

const reasonUntrusted = "signed by a key this backpack does not trust"

// checkEvent runs the per-event checks. It returns the candidate, or why
// the event cannot be applied.
// A nil candidate with a nil HeldEvent means the event is already held
// with identical bytes (checked before the signature, which it passed
// when it was first held, so re-deliveries cost no verification); at is
// then the held item's position when the line is its canonical line
// byte for byte (else -1).
func (b *Backpack) checkEvent(line []byte, source string, x *logIndex) (c *candidate, he *HeldEvent, at int) {
	held := func(reason string, e *bplog.Event) *HeldEvent {
		h := &HeldEvent{Reason: reason, Source: source, Line: string(line)}
		if e != nil {
			h.EventID, h.Actor, h.KeyID = e.ID, e.Actor, e.KeyID
		}
		return h
	}
	trimmed := bytes.TrimSpace(line)
	if at := x.holdsLine(trimmed); at >= 0 {
		return nil, nil, at
	}
	e, err := bplog.Parse(trimmed)
	if err != nil {
		return nil, held("not a usable event: "+err.Error(), e), -1
	}
	full, signed, idPre, err := e.Encodings()
	if err != nil {
		return nil, held(err.Error(), e), -1
	}
	hash := sha256.Sum256(full)
	if i, ok := x.byID[e.ID]; ok && x.hashes[i] == hash {
		return nil, nil, -1
	}
	if rule, want, _ := e.CheckIDWith(idPre); rule == bplog.IDMismatch {
		return nil, held(fmt.Sprintf("event_id does not match the content (expected %s)", want), e), -1
	}
	if e.Sig == "" {
		return nil, held("event is not signed", e), -1
	}
	vk, err := b.reg.ResolveVerifier(e.KeyID)
	switch {
	case errors.Is(err, bplog.ErrUnknownKey):
		return nil, held(reasonUntrusted, e), -1
	case errors.Is(err, bplog.ErrRevokedKey):
		return nil, held("signed by a revoked key", e), -1
	}
	if err := e.VerifySignatureWith(vk, signed); err != nil {
		return nil, held("signature does not verify", e), -1
	}
	return &candidate{e: e, line: full, hash: hash, source: source}, nil, -1
}

// mergeLocked puts accepted events into the log in the merge order:
// appended when the order keeps every existing line where it is, else by
// rewriting the log. x holds the existing events in file order; order the
// accepted ones.
// known holds, by item position, lines already confirmed to be held
// items' canonical lines (nil entries, or nil: none).
func (b *Backpack) mergeLocked(ctx context.Context, x *logIndex, order []*candidate, res *IngestResult, known [][]byte) error {
	t0 := time.Now()
	incoming := make([]bplog.OrderItem, len(order))
	for i, c := range order {
		incoming[i] = c.e.Item()
	}
	existing := len(x.items)
	var plan []int
	appendOnly := false
	// The cheap test first: new events that all sort after the log's
	// largest key go at its end, in their own merge order, without
	// re-sorting the whole log (the log is kept in the merge order).
	if b.maxKeyKnown {
		if o, ok := bplog.AppendsAfter(b.maxKey, incoming); ok {
			plan = make([]int, 0, existing+len(o))
			for i := range existing {
				plan = append(plan, i)
			}
			for _, j := range o {
				plan = append(plan, existing+j)
			}
			appendOnly = true
		}
	}
	var pre *baseDecode
	if !appendOnly {
		// A merge that must reorder the log replays the state from the
		// base snapshot: it is decoded on another core while the plan is
		// made.
		if b.base != nil {
			pre = b.decodeBase()
		}
		plan, appendOnly = bplog.MergePlan(x.items, incoming)
		if appendOnly && pre != nil {
			<-pre.done
			pre = nil
		}
	}
	byID := make(map[string]*candidate, len(order))
	for _, c := range order {
		byID[c.e.ID] = c
	}
	if appendOnly && len(order) == 0 {
		return nil
	}
	if appendOnly {
		var lines [][]byte
		var evs []*bplog.Event
		for _, p := range plan[existing:] {
			c := order[p-existing]
			lines = append(lines, c.line)
			evs = append(evs, c.e)
		}
		if err := b.appendLinesLocked(lines, evs); err != nil {
			return err
		}
		for _, c := range evs {
			x.add(c, byID[c.ID].hash)
		}
		return nil
	}
	res.Rewrote = true
	b.log.Debug("merge: plan", "events", len(plan), "took", time.Since(t0))
	ids := make([]string, len(plan))
	for i, p := range plan {
		if p < existing {
			ids[i] = x.items[p].ID
		} else {
			ids[i] = incoming[p-existing].ID
		}
	}
	b.index = nil // rebuilt in the new file order on next use
	return b.rewriteLocked(ctx, x, plan, order, ids, byID, known, pre)
}

// rewriteLocked writes the log in the merge order plan (positions in
// x.items, then in order for the accepted events; ids are the same
// events' ids), through a temp file, fsync and rename, then brings the
// state up to date.
func (b *Backpack) rewriteLocked(ctx context.Context, x *logIndex, plan []int, order []*candidate, ids []string, added map[string]*candidate, known [][]byte, pre *baseDecode) error {
	t0 := time.Now()
	if pre != nil {
		// Whatever happens, the snapshot is not touched again while
		// it decodes.
		defer func() { <-pre.done }()
	}
	old := b.keptLog()
	if old == nil {
		var err error
		if old, err = os.ReadFile(b.path(EventsPath)); err != nil {
			return err
		}
	}
	existing := len(x.items)
	// The events the merge keeps in place at the log's start, when the
	// log is clean (Backpack.cleanLines), keep their bytes as they are:
	// only the lines after them are looked at.
	kept, from := 0, 0
	if b.cleanLines == b.lines && b.cleanOffset == b.logSize && b.cleanOffset == int64(len(old)) && existing == b.lines {
		for kept < len(plan) && kept < existing && plan[kept] == kept {
			kept++
		}
		from = lineStart(old, b.lines-kept)
		if from < 0 {
			kept, from = 0, 0
		}
	}
	nx, out, evidence, unusable, err := b.buildRewrite(x, plan, order, known, old, kept, from)
	if err == nil && kept > 0 {
		tailRewrites.Add(1)
		b.log.Debug("rewrite: kept the clean prefix", "events", kept, "bytes", from)
	}
	if errors.Is(err, errNotClean) {
		b.log.Warn("the log's clean prefix is not what was noted; rewriting the log whole")
		from = 0
		nx, out, evidence, unusable, err = b.buildRewrite(x, plan, order, known, old, 0, 0)
	}
	if err != nil {
		return err
	}
	if err := b.appendHeldLocked("forks", evidence); err != nil {
		return err
	}
	if err := b.appendHeldLocked("quarantine", unusable); err != nil {
		return err
	}
	// The bytes before the first changed line are the same in both logs,
	// so a state snapshot taken within them still holds.
	same := int64(from) + commonLinePrefix(old[from:], out[from:])
	b.log.Debug("rewrite: new log built", "took", time.Since(t0))
	// The new log is written and synced while the state is brought up to
	// date from its bytes in memory; the state cache is written only once
	// the log is in place.
	replaced := make(chan error, 1)
	go func() {
		defer func() { b.log.Debug("rewrite: log written", "took", time.Since(t0)) }()
		// A tail that is the smaller part of the log is rewritten in
		// place under the rewrite journal, unless a reader holds the
		// file and must not see its bytes change (a mount's open file);
		// otherwise the whole log is replaced through a temp file and
		// rename.
		if int64(len(old)) == b.app.Size() && same > int64(len(out))/2 {
			unlock, ok, err := b.app.LockReaders()
			if err != nil {
				replaced <- err
				return
			}
			if ok {
				b.log.Debug("rewrite: the tail in place", "from", same, "size", len(out))
				err := b.replaceTailLocked(old, out, same)
				unlock()
				replaced <- err
				return
			}
			b.log.Debug("rewrite: a reader holds the log open; replacing the whole file")
		}
		b.log.Debug("rewrite: the whole file", "changed_from", same, "size", len(out))
		replaced <- b.app.Replace(out)
	}()
	// The index goes to its cache file on another core meanwhile.
	ix := b.stageIndex(nx)
	serr := b.restateLocked(ctx, out, nx, same, pre)
	var staged *cacheWrite
	if serr == nil {
		b.log.Debug("rewrite: state", "took", time.Since(t0))
		var err error
		staged, err = b.stageCacheLocked(ix)
		b.log.Debug("rewrite: cache staged", "took", time.Since(t0))
		if err != nil {
			b.log.Warn("state cache not written", "err", err)
		}
	} else {
		<-ix.done
		os.Remove(ix.tmp)
	}
	if err := <-replaced; err != nil {
		staged.discard()
		return b.reloadAfterFailureLocked(err)
	}
	b.log.Debug("rewrite: log replaced", "took", time.Since(t0))
	if serr != nil {
		staged.discard()
		return b.reloadAfterFailureLocked(serr)
	}
	if changed, err := b.applyKeyEventsInOrder(ids, added); err != nil {
		staged.discard()
		return err
	} else if changed {
		b.keysChanged = true
	}
	if staged != nil {
		if err := b.commitCacheLocked(staged); err != nil {
			b.log.Warn("state cache not written", "err", err)
		}
	}
	b.log.Debug("rewrite: cache", "took", time.Since(t0))
	if err := b.writeDerivedLocked(); err != nil {
		return err
	}
	b.log.Debug("rewrite: derived files", "took", time.Since(t0))
	return b.publishLocked()
}

var errNotClean = errors.New("store: the log's clean prefix does not hold its events")

// lineStart returns the offset at which the line n lines before the end
// of data starts (data ends with LF; -1 when it has fewer lines).
func lineStart(data []byte, n int) int {
	end := len(data)
	if end > 0 && data[end-1] != '\n' {
		return -1
	}
	for range n {
		if end == 0 {
			return -1
		}
		end = bytes.LastIndexByte(data[:end-1], '\n') + 1
	}
	return end
}

// buildRewrite builds the log in the merge order plan (positions in
// x.items, then in order), and its index, from old: the old log, whose
// first kept events (x.items[:kept], plan[:kept] in place) are its first
// from bytes, clean. Only the lines after them are looked at. Every line
// of the old log goes into the new one, or is returned as fork evidence
// or unusable, to be held with the reason: nothing is dropped silently.
func (b *Backpack) buildRewrite(x *logIndex, plan []int, order []*candidate, known [][]byte, old []byte, kept, from int) (*logIndex, []byte, []HeldEvent, []HeldEvent, error) {
	// Lines the index describes byte for byte (found by id, confirmed by
	// hash, on every core) are taken as they are, without parsing.
	lines := splitLines(old[from:])
	match := make([]int32, len(lines))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	chunk := (len(lines) + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(lines))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := lo; k < hi; k++ {
				match[k] = -1
				t := bytes.TrimSpace(lines[k])
				if id, ok := quickEventID(t); ok {
					// A line equal to one confirmed in the batch needs
					// no hash.
					if i, ok := x.byID[string(id)]; ok && ((known != nil && known[i] != nil && bytes.Equal(known[i], t)) || x.hashes[i] == sha256.Sum256(t)) {
						match[k] = int32(i)
					}
				}
			}
		}()
	}
	wg.Wait()
	existing := len(x.items)
	if kept > 0 && kept < existing && (len(match) == 0 || match[0] != int32(kept)) {
		// The first line after the kept ones is not the next event.
		return nil, nil, nil, nil, errNotClean
	}
	lineAt := make([][]byte, existing)
	var unusable, evidence []HeldEvent
	for k, l := range lines {
		t := bytes.TrimSpace(l)
		if i := match[k]; i >= 0 {
			if lineAt[i] == nil {
				lineAt[i] = t
			}
			continue
		}
		if len(t) == 0 {
			continue
		}
		e, err := bplog.Parse(t)
		var full []byte
		if err == nil {
			full, _, _, err = e.Encodings()
		}
		if err != nil {
			unusable = append(unusable, HeldEvent{Reason: "unusable log line moved out when the log was reordered: " + err.Error(), Line: string(t)})
			continue
		}
		i, ok := x.byID[e.ID]
		switch {
		case !ok:
			unusable = append(unusable, HeldEvent{EventID: e.ID, Actor: e.Actor, KeyID: e.KeyID, Line: string(full),
				Reason: "log line that is not a usable event moved out when the log was reordered"})
		case x.hashes[i] != sha256.Sum256(full):
			evidence = append(evidence, HeldEvent{EventID: e.ID, Actor: e.Actor, KeyID: e.KeyID, Line: string(full),
				Reason: "same event_id as a held event with different content (fork evidence), moved out when the log was reordered"})
		case lineAt[i] == nil:
			lineAt[i] = full // held, but not stored canonically
		}
	}
	// The new log and its index, in the new order, from what is known of
	// each line: nothing is parsed again.
	lineOf := func(p int) []byte {
		if p < existing {
			return lineAt[p]
		}
		return order[p-existing].line
	}
	size := from
	for _, p := range plan[kept:] {
		size += len(lineOf(p)) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, old[:from]...)
	// Its lookup maps are built when next needed (the rewrite itself and
	// the state cache need only its arrays).
	nx := &logIndex{items: make([]bplog.OrderItem, 0, len(plan)), actors: make([]string, 0, len(plan)), hashes: make([][32]byte, 0, len(plan))}
	nx.items = append(nx.items, x.items[:kept]...)
	nx.actors = append(nx.actors, x.actors[:kept]...)
	nx.hashes = append(nx.hashes, x.hashes[:kept]...)
	for _, p := range plan[kept:] {
		l := lineOf(p)
		if l == nil {
			if kept > 0 {
				return nil, nil, nil, nil, errNotClean
			}
			return nil, nil, nil, nil, fmt.Errorf("bug: store: event %s missing when rewriting the log", x.items[p].ID)
		}
		out = append(out, l...)
		out = append(out, '\n')
		if p < existing {
			nx.appendUnique(x.items[p], x.actors[p], x.hashes[p])
		} else {
			c := order[p-existing]
			nx.appendUnique(c.e.Item(), c.e.Actor, c.hash)
		}
	}
	return nx, out, evidence, unusable, nil
}

// commonLinePrefix returns the length of the longest run of whole lines
// that a and b both start with.
func commonLinePrefix(a, b []byte) int64 {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n && string(a[i:i+8]) == string(b[i:i+8]) {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	if i == len(a) && i == len(b) {
		return int64(i)
	}
	return int64(bytes.LastIndexByte(a[:i], '\n') + 1)
}

// baseReplays counts the rewrites whose state replay started from the
// base snapshot (for tests and debugging).
var baseReplays atomic.Int64

// tailRewrites counts the rewrites that kept a clean prefix of the log
// without looking at it (for tests and debugging).
var tailRewrites atomic.Int64

// restateLocked makes the in-memory state describe data, the log just
// written in full, whose events nx indexes (one canonical event a line):
// the reducer state is replayed from the base snapshot when the log did
// not change before it (same bytes up to offset same), else from the
// start; heads, the largest key and the prefix hash come from the index
// and the bytes.
func (b *Backpack) restateLocked(ctx context.Context, data []byte, nx *logIndex, same int64, pre *baseDecode) error {
	st := reducer.New()
	var from int64
	line, entries := 0, 0
	if pre == nil && b.base != nil && b.base.offset <= same {
		pre = b.decodeBase()
	}
	if pre != nil {
		<-pre.done
	}
	switch base := b.base; {
	case base == nil:
	case pre != nil && !pre.intact:
		b.log.Warn("state snapshot in the cache is damaged; replaying the whole log")
		b.base = nil
	case base.offset > same || pre == nil:
		b.base = nil
	case pre.err != nil:
		b.log.Warn("state snapshot unusable; replaying the whole log", "err", pre.err)
		b.base = nil
	default:
		b.log.Debug("rewrite: replaying from the state snapshot", "offset", base.offset, "of", len(data))
		baseReplays.Add(1)
		st, from, line, entries = pre.st, base.offset, base.lines, base.entries
	}
	// The new log's running hash, on another core meanwhile: from the
	// old log's last mark before the first changed byte.
	hashed := make(chan *logHasher, 1)
	go func() {
		h, n := b.logHash.resume(same)
		h.Write(data[n:])
		hashed <- h
	}()
	target := baseTarget(int64(len(data)))
	b.state, b.pending = st, nil
	err := scan.Run(ctx, bytes.NewReader(data[from:]), scan.Options{Offset: from, FirstLine: line + 1}, func(it *scan.Item) error {
		b.maybeBaseLocked(it.Offset, it.Number-1, entries, target, int64(len(data)))
		if it.Err != nil {
			return fmt.Errorf("bug: store: rewritten log line %d unusable: %w", it.Number, it.Err)
		}
		st.Apply(it.Value)
		entries++
		return nil
	})
	if err != nil {
		<-hashed
		b.state, b.pending = nil, nil
		return err
	}
	b.state = st
	b.index, b.indexScanned = nx, false
	b.heads = make(map[string]Head, len(b.heads))
	b.maxKey, b.maxKeyKnown = bplog.OrderItem{}, true
	for i, it := range nx.items {
		a := nx.actors[i]
		b.heads[a] = Head{ID: it.ID, Events: b.heads[a].Events + 1}
		if bplog.CompareKey(it, b.maxKey) > 0 {
			b.maxKey = it
		}
	}
	b.logHash = <-hashed
	b.logSize = int64(len(data))
	b.logBytes = nil
	if b.opts.KeepLog {
		b.logBytes = data
	}
	b.lines, b.entries = len(nx.items), entries
	// The new log is the index's canonical lines, each once.
	b.cleanLines, b.cleanOffset = len(nx.items), b.logSize
	b.badLines = nil
	b.sinceCache = entries
	return nil
}

// baseDecode is the base snapshot being checked and decoded on another
// goroutine (decodeBase), which has the snapshot to itself until done is
// closed.
type baseDecode struct {
	done   chan struct{}
	intact bool
	st     *reducer.State
	err    error
}

// decodeBase starts checking and decoding the base snapshot b.base (which
// must be set).
func (b *Backpack) decodeBase() *baseDecode {
	d := &baseDecode{done: make(chan struct{})}
	base := b.base
	go func() {
		defer close(d.done)
		if d.intact = base.want == nil || base.intact(); d.intact {
			d.st, d.err = decodeReducer(base.data)
		}
	}()
	return d
}

// keepForkEvidenceLocked records both contents of one event_id.
func (b *Backpack) keepForkEvidenceLocked(c *candidate) {
	b.appendHeldLocked("forks", []HeldEvent{{EventID: c.e.ID, Actor: c.e.Actor, KeyID: c.e.KeyID, Source: c.source, Line: string(c.line),
		Reason: "same event_id as a held event with different content (fork evidence)"}})
}

// Held events live in the device directory, outside the backpack:
// <device dir>/<kind>/<event id or hash>.json, one canonical JSON object
// each.
func (b *Backpack) heldDir(kind string) (string, error) {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dev, kind), nil
}

func heldName(h HeldEvent) string {
	if h.EventID != "" && safeName(h.EventID) == h.EventID {
		sum := sha256.Sum256([]byte(h.Line))
		return h.EventID + "-" + hex.EncodeToString(sum[:4]) + ".json"
	}
	sum := sha256.Sum256([]byte(h.Line))
	return "line-" + hex.EncodeToString(sum[:12]) + ".json"
}

func (h HeldEvent) value(now string) canon.Value {
	var o canon.ObjectBuilder
	o.Set("event_id", canon.StringValue(h.EventID)).Set("actor", canon.StringValue(h.Actor)).
		Set("key_id", canon.StringValue(h.KeyID)).Set("reason", canon.StringValue(h.Reason)).
		Set("source", canon.StringValue(h.Source)).Set("line", canon.StringValue(h.Line)).
		Set("held_at_utc", canon.StringValue(now))
	return o.Value()
}

// appendHeldLocked adds events to a held set (existing entries stay).
func (b *Backpack) appendHeldLocked(kind string, hs []HeldEvent) error {
	if len(hs) == 0 {
		return nil
	}
	dir, err := b.heldDir(kind)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	now := pytime.FormatUTC(b.opts.Now())
	for _, h := range hs {
		p := filepath.Join(dir, heldName(h))
		if _, err := os.Stat(p); err == nil {
			continue
		}
		data, err := canon.Encode(h.value(now))
		if err != nil {
			return err
		}
		if err := writeFileAtomic(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// saveHeldLocked replaces a held set.
func (b *Backpack) saveHeldLocked(kind string, hs []HeldEvent) error {
	dir, err := b.heldDir(kind)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, h := range hs {
		keep[heldName(h)] = true
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !keep[e.Name()] {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return b.appendHeldLocked(kind, hs)
}

// loadHeldLocked reads a held set, oldest name first.
func (b *Backpack) loadHeldLocked(kind string) ([]HeldEvent, error) {
	dir, err := b.heldDir(kind)
	if err != nil {
		return nil, err
	}
	return readHeld(dir)
}

func readHeld(dir string) ([]HeldEvent, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var out []HeldEvent
	for _, e := range ents {
		if !e.Type().IsRegular() || filepath.Ext(e.Name()) != ".json" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		v, err := canon.Limits{MaxSize: 8 << 20}.Parse(data)
		if err != nil {
			continue // a damaged entry is skipped here and shown by `quarantine`
		}
		out = append(out, HeldEvent{EventID: v.Field("event_id").Str(), Actor: v.Field("actor").Str(), KeyID: v.Field("key_id").Str(),
			Reason: v.Field("reason").Str(), Source: v.Field("source").Str(), Line: v.Field("line").Str()})
	}
	return out, nil
}

// Held returns the events held in the quarantine (kind "quarantine"),
// pending (kind "pending") or kept as fork evidence (kind "forks").
func (b *Backpack) Held(kind string) ([]HeldEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loadHeldLocked(kind)
}

// QuarantineFile keeps a copy of a file refused as a whole (a bundle), with
// the reason next to it, in the device's quarantine.
func (b *Backpack) QuarantineFile(path, reason string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dir, err := b.heldDir("quarantine")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	name := "bundle-" + hex.EncodeToString(sum[:12])
	if err := writeFileAtomic(filepath.Join(dir, name+".bin"), data, 0o600); err != nil {
		return err
	}
	var o canon.ObjectBuilder
	o.Set("file", canon.StringValue(path)).Set("reason", canon.StringValue(reason)).
		Set("held_at_utc", canon.StringValue(pytime.FormatUTC(b.opts.Now())))
	return writeFileAtomic(filepath.Join(dir, name+".err"), append(canon.MustEncode(o.Value()), '\n'), 0o600)
}

// ForkRecord is what the device recorded about a fork it learned of.
type ForkRecord struct {
	Kind       string            `json:"kind"`
	Actor      string            `json:"actor"`
	ForkPoint  string            `json:"fork_point"`
	Sources    map[string]string `json:"sources"` // event id -> bundle or peer that brought it
	DetectedAt string            `json:"detected_at_utc"`
}

// ForkRecords returns the forks this device has recorded.
func (b *Backpack) ForkRecords() ([]ForkRecord, error) { return ReadForkRecords(b.dir) }

// ReadForkRecords returns the forks this device recorded for the backpack
// in dir, without opening it.
func ReadForkRecords(backpackDir string) ([]ForkRecord, error) {
	g, err := ReadGenesis(backpackDir)
	if err != nil {
		return nil, err
	}
	dev, err := DeviceDir(g.UID, backpackDir)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dev, "forks")
	names, err := filepath.Glob(filepath.Join(dir, "fork-*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []ForkRecord
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		v, err := canon.Limits{MaxSize: 1 << 20}.Parse(data)
		if err != nil {
			continue
		}
		r := ForkRecord{Kind: v.Field("kind").Str(), Actor: v.Field("actor").Str(), ForkPoint: v.Field("fork_point").Str(),
			DetectedAt: v.Field("detected_at_utc").Str(), Sources: map[string]string{}}
		for _, e := range v.Field("events").Elems() {
			r.Sources[e.Field("event_id").Str()] = e.Field("source").Str()
		}
		out = append(out, r)
	}
	return out, nil
}

// RetryQuarantine runs the quarantined events through Ingest again (after
// a key was trusted, say). Events that are applied or found already held
// leave the quarantine; the others stay, with their original reason.
func (b *Backpack) RetryQuarantine(ctx context.Context) (*IngestResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.retryQuarantineLocked(ctx)
}

func (b *Backpack) retryQuarantineLocked(ctx context.Context) (*IngestResult, error) {
	hs, err := b.loadHeldLocked("quarantine")
	if err != nil {
		return nil, err
	}
	var lines [][]byte
	for _, h := range hs {
		if h.EventID != "" {
			lines = append(lines, []byte(h.Line))
		}
	}
	res, err := b.ingestLocked(ctx, lines, "quarantine retry", nil)
	if err != nil {
		return nil, err
	}
	x, err := b.indexLocked(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := b.heldDir("quarantine")
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if _, held := x.byID[h.EventID]; held && h.EventID != "" {
			os.Remove(filepath.Join(dir, heldName(h)))
		}
	}
	return res, nil
}

// DropHeld deletes held events of a kind ("quarantine" or "pending"):
// those with the given event ids, or all of them. It returns how many.
func (b *Backpack) DropHeld(kind string, ids []string, all bool) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writableLocked(); err != nil {
		return 0, err
	}
	hs, err := b.loadHeldLocked(kind)
	if err != nil {
		return 0, err
	}
	dir, err := b.heldDir(kind)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	for _, h := range hs {
		if all || want[h.EventID] {
			if err := os.Remove(filepath.Join(dir, heldName(h))); err == nil {
				n++
			}
		}
	}
	return n, nil
}

// applyKeyEventsInOrder applies the key events among added, in log order.
func (b *Backpack) applyKeyEventsInOrder(ids []string, added map[string]*candidate) (bool, error) {
	var evs []*bplog.Event
	for _, id := range ids {
		if c := added[id]; c != nil {
			evs = append(evs, c.e)
		}
	}
	return b.applyKeyEventsLocked(evs)
}

// mergeOwnLocked puts the device's own new events into the log through the
// merge order (used when they do not simply sort after the log).
func (b *Backpack) mergeOwnLocked(lines [][]byte, evs []*bplog.Event) error {
	ctx := context.Background()
	x, err := b.indexLocked(ctx)
	if err != nil {
		return err
	}
	order := make([]*candidate, len(evs))
	for i, e := range evs {
		order[i] = &candidate{e: e, line: lines[i], hash: sha256.Sum256(lines[i]), source: "this device"}
	}
	return b.mergeLocked(ctx, x, order, &IngestResult{}, nil)
}

// splitLines splits data at universal newlines (\n, \r\n or \r), as the
// log reader does.
func splitLines(data []byte) [][]byte {
	out := make([][]byte, 0, bytes.Count(data, []byte{'\n'})+1)
	if bytes.IndexByte(data, '\r') < 0 {
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				return append(out, data)
			}
			out = append(out, data[:i])
			data = data[i+1:]
		}
		return out
	}
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return out
}
