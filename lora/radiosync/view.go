package radiosync

import (
	"bytes"
	"context"
	"encoding/binary"
	"sort"

	bplog "github.com/backpack-field/backpack/log"
)

// logView is the device's log as the protocol needs it: events in log
// order, each actor's chain, positions. It is rebuilt when the frontier
// changes.
type logView struct {
	digest [32]byte
	lines  [][]byte
	events []*bplog.Event
	chains map[string][]int    // actor -> indices into events, log order
	byHash map[[4]byte]string  // ActorHash -> actor
	pos    map[string]int      // event id -> 1-based position in its chain
	at     map[string]int      // event id -> index into events
	idb    map[string][12]byte // event id -> binary id (when it has one)
}

func buildView(ctx context.Context, st Store) (*logView, error) {
	f := st.Frontier()
	lines, err := st.Delta(ctx, nil)
	if err != nil {
		return nil, err
	}
	v := &logView{digest: f.Digest(), chains: map[string][]int{}, byHash: map[[4]byte]string{},
		pos: map[string]int{}, at: map[string]int{}, idb: map[string][12]byte{}}
	for _, l := range lines {
		e, err := bplog.Parse(l)
		if err != nil {
			continue
		}
		i := len(v.events)
		v.events = append(v.events, e)
		v.lines = append(v.lines, l)
		v.chains[e.Actor] = append(v.chains[e.Actor], i)
		v.byHash[ActorHash(e.Actor)] = e.Actor
		v.pos[e.ID] = len(v.chains[e.Actor])
		v.at[e.ID] = i
		if b, ok := idBytes(e.ID); ok {
			v.idb[e.ID] = [12]byte(b)
		}
	}
	return v, nil
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

// resolve finds the newest event of actor whose binary id starts with p.
func (v *logView) resolve(actor string, p []byte) string {
	c := v.chains[actor]
	for i := len(c) - 1; i >= 0; i-- {
		if id := v.events[c[i]].ID; v.hasPrefix(id, p) {
			return id
		}
	}
	return ""
}

// Compact frontier (the body of a FRONTIER frame): a uvarint actor count,
// then per actor its ActorHash, a uvarint event count, the first 6 bytes
// of its head's binary id, a byte giving how many ancestors follow and
// the first 4 bytes of each ancestor's id, at the chain positions
// bplog.AncestorCounts lists, in that order.
type frontierEntry struct {
	count uint64
	head  [digestSize]byte
	anc   [][4]byte
}

const maxAnc = 6

func appendFrontier(b []byte, v *logView, room, anc int) []byte {
	actors := make([]string, 0, len(v.chains))
	for a := range v.chains {
		actors = append(actors, a)
	}
	sort.Strings(actors)
	start := len(b)
	b = binary.AppendUvarint(b, uint64(len(actors)))
	n := 0
	for _, a := range actors {
		c := v.chains[a]
		var e []byte
		h := ActorHash(a)
		e = append(e, h[:]...)
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
		if len(b)+len(e)+1 > start+room { // +1: the count may grow a byte
			break
		}
		b = append(b, e...)
		n++
	}
	if n != len(actors) {
		// Rewrite the count: only n actors fit.
		rest := append([]byte(nil), b[start+uvarintLen(uint64(len(actors))):]...)
		b = binary.AppendUvarint(b[:start], uint64(n))
		b = append(b, rest...)
	}
	return b
}

func uvarintLen(x uint64) int { return len(binary.AppendUvarint(nil, x)) }

// encodeFrontier returns the largest compact frontier of v that fits in
// room bytes: with up to 6 ancestors per actor if they fit, else with
// fewer, else without.
func encodeFrontier(v *logView, room int) []byte {
	var b []byte
	for _, anc := range []int{maxAnc, 3, 0} {
		b = appendFrontier(nil, v, room, anc)
		if n, _ := binary.Uvarint(b); int(n) == len(v.chains) {
			break
		}
	}
	return b
}

const maxFrontierActors = 1024

func parseFrontier(p []byte) (map[[4]byte]frontierEntry, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > maxFrontierActors {
		return nil, errFrame
	}
	p = p[k:]
	out := make(map[[4]byte]frontierEntry, n)
	for range n {
		if len(p) < 4 {
			return nil, errFrame
		}
		h := [4]byte(p[:4])
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
		out[h] = e
	}
	if len(p) != 0 {
		return nil, errFrame
	}
	return out, nil
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
