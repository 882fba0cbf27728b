package log

import (
	"hash/maphash"
	"slices"
	"strings"
)

// The merge order.
//
// The reducer is order-dependent, so every replica must put the same set
// of events in the same order. The reference (SPEC §8.2) stable-sorts the
// merged list by the tie key (timestamp_utc, event_id), comparing strings
// by code point. That ignores the chains: with a skewed clock, with mixed
// timestamp spellings ("…:01Z" sorts after "…:01.5+00:00") or with equal
// timestamps (the demo backpack), an event can land before its own
// predecessor.
//
// MergeOrder keeps the tie key but never breaks a link: it is a topological
// sort over the prev_event_hash links that always emits, among the events
// whose predecessors are all out, the one with the smallest key. When the
// reference's sort already puts every predecessor first (the normal case),
// the two orders are identical: at each step the sort's next event is ready
// and has the smallest remaining key, so the heap picks it too.

// OrderItem is what the merge order needs to know about an event.
type OrderItem struct {
	ID        string // event_id
	Prev      string // prev_event_hash
	HasPrev   bool   // prev_event_hash is a string (not null or absent)
	Timestamp string // timestamp_utc; "" when absent, as the reference's `or ""`
}

// Item returns the order item of e.
func (e *Event) Item() OrderItem {
	return OrderItem{ID: e.ID, Prev: e.Prev, HasPrev: e.HasPrev, Timestamp: e.Timestamp}
}

// CompareKey compares the tie keys (Timestamp, ID) of a and b as strings in
// byte order (code point order for UTF-8), the reference's sort key. It
// returns -1, 0 or +1.
func CompareKey(a, b OrderItem) int {
	if c := strings.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// MergeOrder returns the indices of items in the merge order:
//
//  1. An item comes after every item whose ID equals its Prev (its
//     predecessor), when such an item is in the set. The actor is not
//     consulted: a link to another actor's event (which the reference's
//     archival seal and SDK write) is honoured too.
//  2. Among the items whose predecessors have all been placed, the next
//     one is the one with the smallest key (Timestamp, ID), compared as
//     strings in byte order; equal keys (only duplicates can tie) go in
//     input order.
//
// Consequences: an item whose predecessor is not in the set is ready at
// once (holding such events back as pending is the caller's decision); the
// events of a fork (two items with the same Prev) both follow their common
// predecessor and are ordered by key; when the items contain duplicates
// (one ID more than once), each copy is placed and an item naming that ID
// waits for all copies. Callers that want the reference's "first copy
// wins" dedup use MergePlan.
//
// Links cannot form a cycle when IDs are content hashes, but MergeOrder
// still terminates on any input: when no item is ready while some remain,
// it places the remaining item with the smallest key (by the same rule) as
// if it were ready, and goes on. That item need not be on the cycle itself:
// it may only wait for one.
//
// The result depends only on the multiset of items (not on their order),
// apart from the relative order of exact duplicates. It runs in
// O(n log n) time.
func MergeOrder(items []OrderItem) []int {
	n := len(items)
	out := make([]int, 0, n)
	if n == 0 {
		return out
	}
	// Group items by ID: gid[i] is the group of item i, count[g] its size.
	ix := newIDIndex(items)
	gid := make([]int32, n)
	var count []int32
	for i := range items {
		g := ix.group(int32(i), int32(len(count)))
		if int(g) == len(count) {
			count = append(count, 0)
		}
		count[g]++
		gid[i] = g
	}
	// Children of each group as linked lists (head per group, next per
	// item); wait[i] is the number of copies of i's predecessor not yet
	// placed.
	head := make([]int32, len(count))
	for g := range head {
		head[g] = -1
	}
	next := make([]int32, n)
	wait := make([]int32, n)
	for i := range items {
		if !items[i].HasPrev {
			continue
		}
		if g := ix.lookup(items[i].Prev); g >= 0 {
			wait[i] = count[g]
			next[i] = head[g]
			head[g] = int32(i)
		}
	}

	h := readyHeap{items: items}
	for i := range items {
		if wait[i] == 0 {
			h.push(int32(i))
		}
	}
	var stuck []int32 // all items by key, built only when a cycle shows up
	var placed []bool
	cursor := 0
	for len(out) < n {
		if len(h.idx) == 0 {
			if stuck == nil {
				stuck = make([]int32, n)
				for i := range stuck {
					stuck[i] = int32(i)
				}
				slices.SortFunc(stuck, h.compare)
				placed = make([]bool, n)
				for _, i := range out {
					placed[i] = true
				}
			}
			for placed[stuck[cursor]] {
				cursor++
			}
			i := stuck[cursor]
			wait[i] = released
			h.push(i)
		}
		i := h.pop()
		out = append(out, int(i))
		if placed != nil {
			placed[i] = true
		}
		for c := head[gid[i]]; c >= 0; c = next[c] {
			wait[c]--
			if wait[c] == 0 {
				h.push(c)
			}
		}
	}
	return out
}

// idIndex maps event ids to group numbers: an open-addressing hash table,
// about twice as fast as a map[string]int32 on a million ids. The hash
// seed is random; it changes where ids sit in the table, never a result.
type idIndex struct {
	items []OrderItem
	seed  maphash.Seed
	mask  uint64
	slots []idSlot
}

type idSlot struct {
	hash  uint32 // high bits of the id's hash
	first int32  // the group's first item, plus one (0: empty slot)
	group int32
}

func newIDIndex(items []OrderItem) idIndex {
	size := 16
	for size < 2*len(items) {
		size *= 2
	}
	return idIndex{items: items, seed: maphash.MakeSeed(), mask: uint64(size - 1), slots: make([]idSlot, size)}
}

// group returns the group of item i's ID, adding it as group g when new.
func (x *idIndex) group(i, g int32) int32 {
	id := x.items[i].ID
	h := maphash.String(x.seed, id)
	for j := h & x.mask; ; j = (j + 1) & x.mask {
		s := &x.slots[j]
		if s.first == 0 {
			*s = idSlot{hash: uint32(h >> 32), first: i + 1, group: g}
			return g
		}
		if s.hash == uint32(h>>32) && x.items[s.first-1].ID == id {
			return s.group
		}
	}
}

// lookup returns the group of id, or -1.
func (x *idIndex) lookup(id string) int32 {
	h := maphash.String(x.seed, id)
	for j := h & x.mask; ; j = (j + 1) & x.mask {
		s := &x.slots[j]
		if s.first == 0 {
			return -1
		}
		if s.hash == uint32(h>>32) && x.items[s.first-1].ID == id {
			return s.group
		}
	}
}

// released marks an item placed to break a cycle: far enough below zero
// that later decrements never bring it back to zero.
const released = -1 << 30

// readyHeap is a binary min-heap of item indices ordered by key, then
// index.
type readyHeap struct {
	items []OrderItem
	idx   []int32
}

func (h *readyHeap) compare(a, b int32) int {
	if c := CompareKey(h.items[a], h.items[b]); c != 0 {
		return c
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (h *readyHeap) push(i int32) {
	h.idx = append(h.idx, i)
	j := len(h.idx) - 1
	for j > 0 {
		p := (j - 1) / 2
		if h.compare(h.idx[j], h.idx[p]) >= 0 {
			break
		}
		h.idx[j], h.idx[p] = h.idx[p], h.idx[j]
		j = p
	}
}

func (h *readyHeap) pop() int32 {
	top := h.idx[0]
	last := len(h.idx) - 1
	h.idx[0] = h.idx[last]
	h.idx = h.idx[:last]
	j := 0
	for {
		l := 2*j + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && h.compare(h.idx[r], h.idx[l]) < 0 {
			m = r
		}
		if h.compare(h.idx[m], h.idx[j]) >= 0 {
			break
		}
		h.idx[j], h.idx[m] = h.idx[m], h.idx[j]
		j = m
	}
	return top
}

// MergePlan merges incoming events into an existing log. Indices below
// len(existing) name existing items (in file order); index len(existing)+j
// names incoming[j]. Like the reference's merge (SPEC §8.1-8.2) it first
// drops repeated IDs, keeping the first copy (existing before incoming, each
// in slice order), then returns the kept items in MergeOrder.
//
// appendOnly reports that the order is the existing log, unchanged and
// complete, followed by the new items: the caller may append
// order[len(existing):] instead of rewriting the file. It is false when a
// new item must go before an existing one, when the existing log is not
// itself in merge order, or when it holds a repeated ID (a rewrite drops
// it).
func MergePlan(existing, incoming []OrderItem) (order []int, appendOnly bool) {
	all := make([]OrderItem, 0, len(existing)+len(incoming))
	all = append(all, existing...)
	all = append(all, incoming...)
	ix := newIDIndex(all)
	kept := make([]int, 0, len(all))
	for i := range all {
		if int(ix.group(int32(i), int32(len(kept)))) == len(kept) {
			kept = append(kept, i)
		}
	}
	sub := all
	if len(kept) < len(all) {
		sub = make([]OrderItem, len(kept))
		for j, i := range kept {
			sub[j] = all[i]
		}
	}
	order = MergeOrder(sub)
	for j, k := range order {
		order[j] = kept[k]
	}
	appendOnly = true
	for j := range existing {
		if j >= len(order) || order[j] != j {
			appendOnly = false
			break
		}
	}
	return order, appendOnly
}

// AppendsAfter is the cheap form of MergePlan's appendOnly for a log too
// large to re-sort on every import. It reports whether incoming items (all
// with IDs the log does not hold) go after every event of an existing log
// whose largest key (CompareKey) is maxKey, and returns their order.
//
// It assumes the existing log is in merge order, that its links form no
// cycle and that none of its events names an incoming ID as predecessor
// (true when events with a missing predecessor are held back as pending),
// and that incoming holds no ID twice;
// then ok means MergePlan would report appendOnly with this order after the
// existing indices. It is conservative: false does not mean that appending
// is wrong, only that MergePlan has to decide.
func AppendsAfter(maxKey OrderItem, incoming []OrderItem) (order []int, ok bool) {
	for i := range incoming {
		if CompareKey(incoming[i], maxKey) <= 0 {
			return nil, false
		}
	}
	return MergeOrder(incoming), true
}
