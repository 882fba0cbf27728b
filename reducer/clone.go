package reducer

import "maps"

// Clone returns an independent copy of s that shares all immutable data
// with it: event values, cached encodings and the prefixes of the
// append-only slices (every slice handed to the copy is capped at its
// length, so appends on either side never write into memory the other
// reads). The cost is proportional to the number of keys and evidence
// groups, not to the amount of evidence. Clone only reads s.
func (s *State) Clone() *State {
	if s.keys == nil {
		return New()
	}
	c := &State{
		keys:         make(map[string]*keyState, len(s.keys)),
		eventCount:   s.eventCount,
		lastEventID:  s.lastEventID,
		currentEpoch: s.currentEpoch,
		reducerMeta:  s.reducerMeta,
		err:          s.err,
	}
	// The arena's chunks are shared; the last one is capped so that the
	// copy starts a new chunk instead of writing after the original's end.
	c.ar = &arena{chunks: capped(s.ar.chunks)}
	if n := len(c.ar.chunks); n > 0 {
		c.ar.chunks = append(c.ar.chunks[:n-1:n-1], capped(c.ar.chunks[n-1]))
	}
	remap := make(map[*keyState]*keyState, len(s.keys))
	for key, ks := range s.keys {
		nk := ks.clone(c.ar)
		c.keys[key] = nk
		remap[ks] = nk
	}
	for ns := range s.sec {
		src, dst := &s.sec[ns], &c.sec[ns]
		dst.live = src.live
		dst.order = make([]*keyState, len(src.order))
		for i, ks := range src.order {
			dst.order[i] = remap[ks]
		}
		dst.pending = make([]*keyState, len(src.pending))
		for i, ks := range src.pending {
			dst.pending[i] = remap[ks]
		}
	}
	c.hc.valid, c.hc.hash = s.hc.valid, s.hc.hash
	c.hc.marks = make([]mark, len(s.hc.marks))
	for i, m := range s.hc.marks {
		m.ks = remap[m.ks]
		c.hc.marks[i] = m // the midstate bytes are never modified
	}
	return c
}

func capped[S ~[]E, E any](s S) S { return s[:len(s):len(s)] }

func (ks *keyState) clone(ar *arena) *keyState {
	nk := *ks
	nk.arch = capped(ks.arch)
	nk.archEnc = capped(ks.archEnc)
	e := &nk.ev
	e.ar = ar
	e.recs = capped(ks.ev.recs)
	e.odd = maps.Clone(ks.ev.odd) // records are never modified
	e.groups = make([]*group, len(ks.ev.groups))
	for i, g := range ks.ev.groups {
		ng := *g
		ng.idx = capped(g.idx)
		e.groups[i] = &ng
	}
	e.byText = nil
	if ks.ev.byText != nil {
		e.byText = make(map[string]*group, len(e.groups))
		for _, g := range e.groups {
			e.byText[g.text] = g
		}
	}
	return &nk
}
