package store

import (
	"context"

	bplog "github.com/backpack-field/backpack/log"
)

// Frontier returns what this replica holds: per actor, its newest event
// in log order and how many of its events the log has.
func (b *Backpack) Frontier() bplog.Frontier {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.frontierLocked()
}

func (b *Backpack) frontierLocked() bplog.Frontier {
	f := make(bplog.Frontier, len(b.heads))
	for a, h := range b.heads {
		f[a] = bplog.ActorHead{Head: h.ID, Count: int64(h.Events)}
	}
	return f
}

// FrontierWithAncestors is Frontier with, per actor, the ids of earlier
// events of its chain at counts n-1, n-2, n-4, ... (bplog.AncestorCounts):
// what a device publishes for peers to compute its delta, so that a peer
// that lacks its newest events (it is ahead) still sends only what follows
// the point where their chains meet.
func (b *Backpack) FrontierWithAncestors(ctx context.Context) (bplog.Frontier, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, err := b.indexLocked(ctx)
	if err != nil {
		return nil, err
	}
	f := b.frontierLocked()
	chains := x.actorChains()
	for a, h := range f {
		pos := chains[a]
		if int64(len(pos)) != h.Count || len(pos) == 0 || x.items[pos[len(pos)-1]].ID != h.Head {
			continue // lines the index leaves out: heads only
		}
		for _, c := range bplog.AncestorCounts(h.Count) {
			h.Ancestors = append(h.Ancestors, bplog.Ancestor{Count: c, ID: x.items[pos[c-1]].ID})
		}
		f[a] = h
	}
	return f, nil
}
