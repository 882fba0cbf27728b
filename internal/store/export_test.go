package store

// SetMinBaseBytes lowers the log size from which the store keeps a base
// snapshot, so that tests can use small logs; it returns the undo.
func SetMinBaseBytes(n int64) func() {
	old := minBaseBytes
	minBaseBytes = n
	return func() { minBaseBytes = old }
}

// BaseReplays returns how many rewrites replayed from the base snapshot.
func BaseReplays() int64 { return baseReplays.Load() }

// BaseOffset returns where the base snapshot stands (-1: none).
func (b *Backpack) BaseOffset() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.base == nil {
		return -1
	}
	return b.base.offset
}

// TailRewrites returns how many rewrites kept a clean prefix unread.
func TailRewrites() int64 { return tailRewrites.Load() }

// PreparedHeld returns how many of p's first lines IngestPrepared found
// held byte for byte.
func PreparedHeld(p *Prepared) int { return p.held }

// PreparedLines returns the lines PrepareLog found.
func PreparedLines(p *Prepared) [][]byte { return p.lines }
