package watcher

// queue holds the notices not yet delivered, at most one per path, in the
// order their paths first became pending. Only Run's goroutine uses it.
type queue struct {
	items map[string]*pending
	order []slot // entries whose pending item is gone are skipped
	head  int
	seq   uint64
}

type slot struct {
	path string
	seq  uint64
}

type pending struct {
	c Change
	// known: the consumer had a notice for this path before this entry
	// was created, so a removal must still be told.
	known bool
	seq   uint64 // its slot in order
}

func newQueue() *queue { return &queue{items: make(map[string]*pending)} }

func (q *queue) len() int { return len(q.items) }

// put makes c the pending notice for its path, replacing an older one.
// known says whether the consumer had a notice for the path before.
func (q *queue) put(c Change, known bool) {
	if p, ok := q.items[c.Path]; ok {
		p.c = c
		return
	}
	q.seq++
	q.items[c.Path] = &pending{c: c, known: known, seq: q.seq}
	q.order = append(q.order, slot{c.Path, q.seq})
}

// putRemoved queues a removal; a path the consumer never heard of is
// simply dropped from the queue.
func (q *queue) putRemoved(c Change) {
	if p, ok := q.items[c.Path]; ok {
		if !p.known {
			delete(q.items, c.Path)
			return
		}
		p.c = c
		return
	}
	q.put(c, true)
}

// peek returns the next notice to deliver.
func (q *queue) peek() (Change, bool) {
	for q.head < len(q.order) {
		s := q.order[q.head]
		if p, ok := q.items[s.path]; ok && p.seq == s.seq {
			return p.c, true
		}
		q.head++
	}
	q.compact()
	return Change{}, false
}

// pop removes the notice peek returned.
func (q *queue) pop() {
	delete(q.items, q.order[q.head].path)
	q.head++
	if q.head > 1024 && q.head > len(q.order)/2 {
		q.compact()
	}
}

func (q *queue) compact() {
	n := copy(q.order, q.order[q.head:])
	clear(q.order[n:])
	q.order = q.order[:n]
	q.head = 0
}

// dropRoot discards the pending notices of root.
func (q *queue) dropRoot(root string) {
	for p, it := range q.items {
		if it.c.Root == root {
			delete(q.items, p)
		}
	}
}
