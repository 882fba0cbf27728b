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

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/scan"
	bplog "github.com/backpack-field/backpack/log"
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
	children map[string]string // actor + "\x00" + prev -> first child id
}

func newLogIndex() *logIndex {
	return &logIndex{byID: map[string]int{}, children: map[string]string{}}
}

func childKey(actor, prev string) string { return actor + "\x00" + prev }

// add records an event; an id already held is ignored.
func (x *logIndex) add(e *bplog.Event, hash [32]byte) {
	x.addItem(e.Item(), e.Actor, hash)
}

func (x *logIndex) addItem(it bplog.OrderItem, actor string, hash [32]byte) {
	if _, dup := x.byID[it.ID]; dup {
		return
	}
	x.byID[it.ID] = len(x.items)
	x.items = append(x.items, it)
	x.actors = append(x.actors, actor)
	x.hashes = append(x.hashes, hash)
	k := childKey(actor, it.Prev)
	if _, ok := x.children[k]; !ok {
		x.children[k] = it.ID
	}
}

// indexLocked returns the log index, building it if needed.
func (b *Backpack) indexLocked(ctx context.Context) (*logIndex, error) {
	if b.index != nil {
		return b.index, nil
	}
	x := newLogIndex()
	f, err := os.Open(b.path(EventsPath))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	err = scan.Run(ctx, f, scan.Options{Hashes: true}, func(it *scan.Item) error {
		if it.Event != nil && it.EventErr == nil && it.EncodeErr == nil {
			x.add(it.Event, it.Hash)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.index = x
	b.indexScanned = true
	return x, nil
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
	return b.ingestLocked(ctx, lines, source)
}

func (b *Backpack) ingestLocked(ctx context.Context, lines [][]byte, source string) (*IngestResult, error) {
	if b.app == nil {
		return nil, ErrReadOnly
	}
	res := &IngestResult{Source: source, Received: len(lines), Missing: map[string]Need{}}
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
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(all); i += workers {
				c, he := b.checkEvent(all[i], srcs[i], x)
				results[i] = checked{c, he}
			}
		}()
	}
	wg.Wait()

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
	batchChild := map[string]string{}
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
		if err := b.mergeLocked(ctx, x, order, res); err != nil {
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
// when it was first held, so re-deliveries cost no verification).
func (b *Backpack) checkEvent(line []byte, source string, x *logIndex) (*candidate, *HeldEvent) {
	held := func(reason string, e *bplog.Event) *HeldEvent {
		h := &HeldEvent{Reason: reason, Source: source, Line: string(line)}
		if e != nil {
			h.EventID, h.Actor, h.KeyID = e.ID, e.Actor, e.KeyID
		}
		return h
	}
	e, err := bplog.Parse(bytes.TrimSpace(line))
	if err != nil {
		return nil, held("not a usable event: "+err.Error(), e)
	}
	full, signed, idPre, err := e.Encodings()
	if err != nil {
		return nil, held(err.Error(), e)
	}
	hash := sha256.Sum256(full)
	if i, ok := x.byID[e.ID]; ok && x.hashes[i] == hash {
		return nil, nil
	}
	if rule, want, _ := e.CheckIDWith(idPre); rule == bplog.IDMismatch {
		return nil, held(fmt.Sprintf("event_id does not match the content (expected %s)", want), e)
	}
	if e.Sig == "" {
		return nil, held("event is not signed", e)
	}
	vk, err := b.reg.ResolveVerifier(e.KeyID)
	switch {
	case errors.Is(err, bplog.ErrUnknownKey):
		return nil, held(reasonUntrusted, e)
	case errors.Is(err, bplog.ErrRevokedKey):
		return nil, held("signed by a revoked key", e)
	}
	if err := e.VerifySignatureWith(vk, signed); err != nil {
		return nil, held("signature does not verify", e)
	}
	return &candidate{e: e, line: full, hash: hash, source: source}, nil
}

// mergeLocked puts accepted events into the log in the merge order:
// appended when the order keeps every existing line where it is, else by
// rewriting the log. x holds the existing events in file order; order the
// accepted ones.
func (b *Backpack) mergeLocked(ctx context.Context, x *logIndex, order []*candidate, res *IngestResult) error {
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
	if !appendOnly {
		plan, appendOnly = bplog.MergePlan(x.items, incoming)
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
	ids := make([]string, len(plan))
	for i, p := range plan {
		if p < existing {
			ids[i] = x.items[p].ID
		} else {
			ids[i] = incoming[p-existing].ID
		}
	}
	b.index = nil // rebuilt in the new file order on next use
	return b.rewriteLocked(ctx, ids, byID)
}

// rewriteLocked writes the log in the order perm, through a temp file,
// fsync and rename, then reloads state from it.
func (b *Backpack) rewriteLocked(ctx context.Context, ids []string, added map[string]*candidate) error {
	old, err := os.ReadFile(b.path(EventsPath))
	if err != nil {
		return err
	}
	lineOf := map[string][]byte{}
	for _, l := range bytes.Split(old, []byte("\n")) {
		if e, err := bplog.Parse(bytes.TrimSpace(l)); err == nil {
			if _, dup := lineOf[e.ID]; !dup {
				if full, _, _, err := e.Encodings(); err == nil {
					lineOf[e.ID] = full
				}
			}
		}
	}
	var out bytes.Buffer
	for _, id := range ids {
		l := lineOf[id]
		if c := added[id]; c != nil {
			l = c.line
		}
		if l == nil {
			return fmt.Errorf("bug: store: event %s missing when rewriting the log", id)
		}
		out.Write(l)
		out.WriteByte('\n')
	}
	// Lines that were never events (unusable lines) are kept in the
	// quarantine rather than dropped.
	var unusable []HeldEvent
	for _, l := range bytes.Split(old, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 {
			if _, err := bplog.Parse(t); err != nil {
				unusable = append(unusable, HeldEvent{Reason: "unusable log line moved out when the log was reordered: " + err.Error(), Line: string(l)})
			}
		}
	}
	if err := b.appendHeldLocked("quarantine", unusable); err != nil {
		return err
	}
	if err := b.app.Replace(out.Bytes()); err != nil {
		return err
	}
	if changed, err := b.applyKeyEventsInOrder(ids, added); err != nil {
		return err
	} else if changed {
		b.keysChanged = true
	}
	b.state = nil
	b.logSize, b.lines, b.entries, b.sinceCache = 0, 0, 0, 0
	os.Remove(b.path(CachePath))
	if err := b.load(ctx); err != nil {
		return err
	}
	if err := b.writeDerivedLocked(); err != nil {
		return err
	}
	return b.publishLocked()
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
	res, err := b.ingestLocked(ctx, lines, "quarantine retry")
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
	return b.mergeLocked(ctx, x, order, &IngestResult{})
}
