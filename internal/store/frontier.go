package store

import bplog "github.com/backpack-field/backpack/log"

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
