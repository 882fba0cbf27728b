package radiosync

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"sort"

	bplog "github.com/backpack-field/backpack/log"
)

// logView is the device's log as the protocol needs it: each actor's
// chain, and per event its line, position and binary id. It follows the
// store incrementally: when the frontier changes it asks the store only
// for what changed (Store.Delta with the view's own frontier), so that a
// new event costs what it brings, not a read of the whole log.
type logView struct {
	digest [32]byte // of the frontier the view holds (heads and counts)
	// Slots: events and their lines, in the order the view learned them
	// (log order after a full build); nil where an event was dropped.
	events []*bplog.Event
	lines  [][]byte
	dead   int                 // dropped slots
	chains map[string][]int    // actor -> slots, chain order
	byHash map[[4]byte]string  // ActorHash -> actor
	pos    map[string]int      // event id -> 1-based position in its chain
	at     map[string]int      // event id -> slot
	idb    map[string][12]byte // event id -> binary id (when it has one)
}

func newView() *logView {
	return &logView{chains: map[string][]int{}, byHash: map[[4]byte]string{},
		pos: map[string]int{}, at: map[string]int{}, idb: map[string][12]byte{}}
}

// buildView reads the whole log.
func buildView(ctx context.Context, st Store) (*logView, error) {
	lines, err := st.Delta(ctx, nil)
	if err != nil {
		return nil, err
	}
	v := newView()
	for _, l := range lines {
		if e, err := bplog.Parse(l); err == nil {
			v.push(e, l)
		}
	}
	v.digest = v.frontier(false).Digest()
	return v, nil
}

// push appends e to its actor's chain.
func (v *logView) push(e *bplog.Event, line []byte) {
	i := len(v.events)
	v.events = append(v.events, e)
	v.lines = append(v.lines, line)
	v.chains[e.Actor] = append(v.chains[e.Actor], i)
	v.byHash[ActorHash(e.Actor)] = e.Actor
	v.pos[e.ID] = len(v.chains[e.Actor])
	v.at[e.ID] = i
	if b, ok := idBytes(e.ID); ok {
		v.idb[e.ID] = [12]byte(b)
	}
}

// frontier is the frontier the view holds, with the ancestors the store
// needs to find where a chain that changed meets the view's.
func (v *logView) frontier(ancestors bool) bplog.Frontier {
	f := make(bplog.Frontier, len(v.chains))
	for a, c := range v.chains {
		h := bplog.ActorHead{Head: v.events[c[len(c)-1]].ID, Count: int64(len(c))}
		if ancestors {
			for _, k := range bplog.AncestorCounts(h.Count) {
				h.Ancestors = append(h.Ancestors, bplog.Ancestor{Count: k, ID: v.events[c[k-1]].ID})
			}
		}
		f[a] = h
	}
	return f
}

// update brings v up to the store: it asks for the events the view's
// frontier lacks and puts them at the end of their chains, after
// dropping what the store no longer has at those positions (a merge that
// placed a fork's events earlier). It reports false, leaving v as it
// was, when the answer does not fit v (the store changed between its
// two reads); v.digest then says whether v matches the store.
func (v *logView) update(ctx context.Context, st Store) (bool, error) {
	lines, err := st.Delta(ctx, v.frontier(true))
	if err != nil {
		return false, err
	}
	front := st.Frontier()
	type add struct {
		e    *bplog.Event
		line []byte
	}
	adds := map[string][]add{}
	var order []string
	for _, l := range lines {
		e, err := bplog.Parse(l)
		if err != nil {
			return false, nil
		}
		if _, ok := adds[e.Actor]; !ok {
			order = append(order, e.Actor)
		}
		adds[e.Actor] = append(adds[e.Actor], add{e, l})
	}
	cuts := make(map[string]int, len(adds))
	for a, evs := range adds {
		h, ok := front[a]
		cut := int(h.Count) - len(evs)
		if !ok || cut < 0 || cut > len(v.chains[a]) {
			return false, nil
		}
		cuts[a] = cut
	}
	for _, a := range order {
		c := v.chains[a]
		for _, slot := range c[cuts[a]:] {
			id := v.events[slot].ID
			delete(v.pos, id)
			delete(v.at, id)
			delete(v.idb, id)
			v.events[slot], v.lines[slot] = nil, nil
			v.dead++
		}
		v.chains[a] = c[:cuts[a]]
		for _, x := range adds[a] {
			v.push(x.e, x.line)
		}
	}
	if v.dead > 1024 && v.dead > len(v.events)/2 {
		v.compact()
	}
	v.digest = v.frontier(false).Digest()
	return true, nil
}

// compact drops the empty slots.
func (v *logView) compact() {
	events := make([]*bplog.Event, 0, len(v.events)-v.dead)
	lines := make([][]byte, 0, cap(events))
	for _, c := range v.chains {
		for k, slot := range c {
			c[k] = len(events)
			v.at[v.events[slot].ID] = len(events)
			events = append(events, v.events[slot])
			lines = append(lines, v.lines[slot])
		}
	}
	v.events, v.lines, v.dead = events, lines, 0
}

// chainEvents returns the first n events of actor's chain (fewer when
// the chain is shorter).
func (v *logView) chainEvents(actor string, n int) []*bplog.Event {
	c := v.chains[actor]
	out := make([]*bplog.Event, 0, min(n, len(c)))
	for _, slot := range c[:min(n, len(c))] {
		out = append(out, v.events[slot])
	}
	return out
}

// idAt is the id of the actor's event at 1-based chain position n.
func (v *logView) idAt(actor string, n int) string {
	c := v.chains[actor]
	if n < 1 || n > len(c) {
		return ""
	}
	return v.events[c[n-1]].ID
}

func (v *logView) hasPrefix(id string, p []byte) bool {
	b, ok := v.idb[id]
	return ok && len(p) <= 12 && bytes.Equal(b[:len(p)], p)
}

// resolve finds the newest event of actor whose binary id starts with p
// and returns its id and key id.
func (v *logView) resolve(actor string, p []byte) (string, string) {
	c := v.chains[actor]
	for i := len(c) - 1; i >= 0; i-- {
		if e := v.events[c[i]]; v.hasPrefix(e.ID, p) {
			return e.ID, e.KeyID
		}
	}
	return "", ""
}

// keyOf is the key id of event id ("" when v does not hold it).
func (v *logView) keyOf(id string) string {
	if slot, ok := v.at[id]; ok {
		return v.events[slot].KeyID
	}
	return ""
}

// Compact frontier: the FRONTIER frames of a device. A frontier too
// large for one frame is split into pages, each covering a range of
// actor hashes, so that a receiver knows, for every actor in the ranges
// it got, whether the sender holds it, and waits for the rest.
//
// Page body: the first 6 bytes of the sender's frontier digest (as in
// its HELLO: pages with the same digest belong together), the lowest and
// highest actor hash the page covers (4 bytes each, inclusive), a
// uvarint actor count, then per actor in actor-hash order its ActorHash,
// a uvarint event count, the first 6 bytes of its head's binary id, a
// byte giving how many ancestors follow and the first 4 bytes of each
// ancestor's id, at the chain positions bplog.AncestorCounts lists, in
// that order.
type frontierEntry struct {
	count uint64
	head  [digestSize]byte
	anc   [][4]byte
}

// frontierPage is a parsed FRONTIER body.
type frontierPage struct {
	digest  [digestSize]byte
	lo, hi  uint32
	entries map[[4]byte]frontierEntry
}

const (
	maxAnc = 6
	// pagedAnc is the number of ancestors per actor in a frontier of
	// several pages: one finds where two chains meet after a one-event
	// fork, at 4 bytes an actor rather than 24.
	pagedAnc = 1
	// pageHead is a page before its actors: digest, lo, hi.
	pageHead = digestSize + 4 + 4
	// maxFrontierPages bounds the frames of one frontier; actors beyond
	// are left out (their range stays uncovered).
	maxFrontierPages = 64
)

func (v *logView) frontierEntry(a string, anc int) []byte {
	c := v.chains[a]
	h := ActorHash(a)
	e := append([]byte(nil), h[:]...)
	e = binary.AppendUvarint(e, uint64(len(c)))
	head := v.idb[v.events[c[len(c)-1]].ID]
	e = append(e, head[:digestSize]...)
	counts := bplog.AncestorCounts(int64(len(c)))
	k := min(anc, len(counts))
	e = append(e, byte(k))
	for _, cnt := range counts[:k] {
		id := v.idb[v.idAt(a, int(cnt))]
		e = append(e, id[:4]...)
	}
	return e
}

// hashOrder returns v's actors in ActorHash order, one per hash (two
// labels with one hash cannot be told apart on the air; the one byHash
// names is kept).
func (v *logView) hashOrder() []string {
	actors := make([]string, 0, len(v.byHash))
	for _, a := range v.byHash {
		actors = append(actors, a)
	}
	sort.Slice(actors, func(i, j int) bool {
		x, y := ActorHash(actors[i]), ActorHash(actors[j])
		return bytes.Compare(x[:], y[:]) < 0
	})
	return actors
}

// encodeFrontier returns the FRONTIER bodies of v for frames with room
// bytes of body: one page with up to 6 ancestors per actor when it fits,
// else with 3; otherwise pages with pagedAnc ancestors per actor.
func encodeFrontier(v *logView, room int) [][]byte {
	actors := v.hashOrder()
	dig := [digestSize]byte(v.digest[:digestSize])
	page := func(lo, hi uint32, entries [][]byte) []byte {
		b := append([]byte(nil), dig[:]...)
		b = binary.BigEndian.AppendUint32(b, lo)
		b = binary.BigEndian.AppendUint32(b, hi)
		b = binary.AppendUvarint(b, uint64(len(entries)))
		for _, e := range entries {
			b = append(b, e...)
		}
		return b
	}
	for _, anc := range []int{maxAnc, 3} {
		var entries [][]byte
		size := pageHead + uvarintLen(uint64(len(actors)))
		for _, a := range actors {
			e := v.frontierEntry(a, anc)
			entries = append(entries, e)
			size += len(e)
		}
		if size <= room {
			return [][]byte{page(0, math.MaxUint32, entries)}
		}
	}
	var pages [][]byte
	lo := uint32(0)
	var entries [][]byte
	size := pageHead + 3 // the count takes at most 3 bytes here
	truncated := false
	for _, a := range actors {
		e := v.frontierEntry(a, pagedAnc)
		if size+len(e) > room && len(entries) > 0 {
			if len(pages)+1 == maxFrontierPages {
				truncated = true
				break
			}
			h := binary.BigEndian.Uint32(e[:4])
			pages = append(pages, page(lo, h-1, entries))
			lo, entries, size = h, nil, pageHead+3
		}
		entries = append(entries, e)
		size += len(e)
	}
	hi := uint32(math.MaxUint32)
	if truncated {
		// Some actors were left out: the last page ends at its last one.
		last := entries[len(entries)-1]
		hi = binary.BigEndian.Uint32(last[:4])
	}
	return append(pages, page(lo, hi, entries))
}

func uvarintLen(x uint64) int { return len(binary.AppendUvarint(nil, x)) }

const maxFrontierActors = 1024

// parseFrontier parses one FRONTIER page (bounded: at most
// maxFrontierActors actors, strictly increasing hashes inside the
// page's range).
func parseFrontier(p []byte) (*frontierPage, error) {
	if len(p) < pageHead {
		return nil, errFrame
	}
	fp := &frontierPage{digest: [digestSize]byte(p[:digestSize]),
		lo: binary.BigEndian.Uint32(p[digestSize:]), hi: binary.BigEndian.Uint32(p[digestSize+4:])}
	if fp.lo > fp.hi {
		return nil, errFrame
	}
	p = p[pageHead:]
	n, k := binary.Uvarint(p)
	if k <= 0 || n > maxFrontierActors {
		return nil, errFrame
	}
	p = p[k:]
	fp.entries = make(map[[4]byte]frontierEntry, n)
	prev := int64(fp.lo) - 1
	for range n {
		if len(p) < 4 {
			return nil, errFrame
		}
		h := [4]byte(p[:4])
		if x := int64(binary.BigEndian.Uint32(h[:])); x <= prev || x > int64(fp.hi) {
			return nil, errFrame
		} else {
			prev = x
		}
		cnt, k := binary.Uvarint(p[4:])
		if k <= 0 {
			return nil, errFrame
		}
		p = p[4+k:]
		if len(p) < digestSize+1 {
			return nil, errFrame
		}
		e := frontierEntry{count: cnt, head: [digestSize]byte(p[:digestSize])}
		na := int(p[digestSize])
		p = p[digestSize+1:]
		if na > 64 || len(p) < 4*na {
			return nil, errFrame
		}
		for i := range na {
			e.anc = append(e.anc, [4]byte(p[4*i:]))
		}
		p = p[4*na:]
		fp.entries[h] = e
	}
	if len(p) != 0 {
		return nil, errFrame
	}
	return fp, nil
}

// theirFrontier is what a device learned of a peer's frontier from its
// FRONTIER pages: the entries of the actor-hash ranges it got, for one
// digest of the peer's frontier.
type theirFrontier struct {
	digest  [digestSize]byte
	entries map[[4]byte]frontierEntry
	spans   [][2]uint32 // covered ranges, inclusive, in no order
}

// add merges a page; a page of another frontier replaces what was known.
func (t *theirFrontier) add(fp *frontierPage) {
	if t.entries == nil || t.digest != fp.digest {
		*t = theirFrontier{digest: fp.digest, entries: map[[4]byte]frontierEntry{}}
	}
	for h := range t.entries {
		if x := binary.BigEndian.Uint32(h[:]); x >= fp.lo && x <= fp.hi {
			delete(t.entries, h)
		}
	}
	for h, e := range fp.entries {
		t.entries[h] = e
	}
	for _, sp := range t.spans {
		if sp == [2]uint32{fp.lo, fp.hi} {
			return
		}
	}
	if len(t.spans) >= 4*maxFrontierPages { // a peer that keeps re-cutting: start over
		t.spans = t.spans[:0]
	}
	t.spans = append(t.spans, [2]uint32{fp.lo, fp.hi})
}

// covers reports whether the peer's frontier is known for actor hash h.
func (t *theirFrontier) covers(h uint32) bool {
	for _, s := range t.spans {
		if h >= s[0] && h <= s[1] {
			return true
		}
	}
	return false
}

// complete reports whether the whole range of hashes is covered.
func (t *theirFrontier) complete() bool {
	next := uint64(0)
	for {
		moved := false
		for _, s := range t.spans {
			if uint64(s[0]) <= next && uint64(s[1]) >= next {
				next, moved = uint64(s[1])+1, true
			}
		}
		if next > math.MaxUint32 {
			return true
		}
		if !moved {
			return false
		}
	}
}

// lookup returns the peer's entry for actor, and whether its frontier
// is known for actor at all (an actor in a covered range without an
// entry is one the peer does not hold).
func (t *theirFrontier) lookup(actor string) (frontierEntry, bool) {
	h := ActorHash(actor)
	e, ok := t.entries[h]
	return e, ok || t.covers(binary.BigEndian.Uint32(h[:]))
}

// held returns how many of actor's events (a prefix of its chain in v)
// the peer whose frontier entry is e holds: e.count when e's head is my
// event at that position; otherwise the largest position where one of
// e's ancestors matches my chain; but when the peer has more events of
// the actor than I do and none of its ancestors at positions I hold
// contradicts my chain, all of mine (the chain is assumed linear: the
// peer is ahead, and sending it my events would only repeat them).
func (v *logView) held(actor string, e frontierEntry) int {
	c := v.chains[actor]
	if e.count >= 1 && e.count <= uint64(len(c)) && v.hasPrefix(v.idAt(actor, int(e.count)), e.head[:]) {
		return int(e.count)
	}
	best, contradicted := 0, false
	counts := bplog.AncestorCounts(int64(e.count))
	for i, a := range e.anc {
		if i >= len(counts) {
			break
		}
		at := int(counts[i])
		if at > len(c) {
			continue
		}
		if v.hasPrefix(v.idAt(actor, at), a[:]) {
			best = max(best, at)
		} else {
			contradicted = true
		}
	}
	if e.count > uint64(len(c)) && !contradicted {
		return len(c)
	}
	return best
}

// viewEvents is the number of events v holds.
func viewEvents(v *logView) int { return len(v.events) - v.dead }
