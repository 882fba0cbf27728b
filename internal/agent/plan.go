package agent

import bplog "github.com/backpack-field/backpack/log"

// exportIDs returns the events to put in a new bundle: those some peer
// lacks (deltas holds, per peer, the event ids Delta found against its
// frontier) and none of our present bundles carries, in the order of
// order (the log order; every delta is in it too).
func exportIDs(order []string, deltas [][]string, carried map[string]bool) []string {
	want := map[string]bool{}
	for _, d := range deltas {
		for _, id := range d {
			if !carried[id] {
				want[id] = true
			}
		}
	}
	var out []string
	for _, id := range order {
		if want[id] {
			out = append(out, id)
			delete(want, id)
		}
	}
	return out
}

// exportBasis is the basis_frontier of a bundle made for peers (their
// frontiers, in key id order): the peer's frontier when there is one;
// with several, the empty frontier if some peer holds nothing, else the
// first peer's. The basis only documents what the delta was computed
// against; receivers check every event anyway.
func exportBasis(peers []bplog.Frontier) bplog.Frontier {
	if len(peers) == 0 {
		return bplog.Frontier{}
	}
	for _, f := range peers {
		if len(f) == 0 {
			return bplog.Frontier{}
		}
	}
	return peers[0]
}

// removable reports whether our bundle carrying ids may be deleted: at
// least one peer is known and no peer's delta holds any of its events,
// that is every known device holds every event of it.
func removable(ids []string, deltas []map[string]bool) bool {
	if len(deltas) == 0 {
		return false
	}
	for _, d := range deltas {
		for _, id := range ids {
			if d[id] {
				return false
			}
		}
	}
	return true
}

// weLack counts the events a peer's frontier has beyond ours, per actor
// (a lower bound: a fork of equal length counts nothing).
func weLack(ours, theirs bplog.Frontier) int64 {
	var n int64
	for a, h := range theirs {
		if d := h.Count - ours[a].Count; d > 0 {
			n += d
		}
	}
	return n
}

// needsFull reports whether some device heard from holds nothing.
func needsFull(peers []bplog.Frontier) bool {
	for _, f := range peers {
		if len(f) == 0 {
			return true
		}
	}
	return false
}
