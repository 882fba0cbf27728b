package log

import (
	"sort"

	"github.com/backpack-field/backpack/internal/canon"
)

// ReferenceChains reproduces the reference's verify_all_causal_chains
// (SPEC §8.3) over a list of parsed log entries in the given order: for
// every actor (a non-empty string after Python truthiness) the first event
// must have a null prev_event_hash and each later one must name the
// previous event's id. It exists to compare with the reference's results;
// Chains is backpack's own, stricter check.
func ReferenceChains(entries []canon.Value) map[string]bool {
	type state struct {
		seen   bool
		last   canon.Value
		broken bool
	}
	chains := map[string]*state{}
	var actors []string
	for _, v := range entries {
		a := v.Field("actor")
		if a.Kind() != canon.String || a.Str() == "" {
			continue
		}
		s := chains[a.Str()]
		if s == nil {
			s = &state{}
			chains[a.Str()] = s
			actors = append(actors, a.Str())
		}
		prev := v.Field("prev_event_hash")
		if !s.seen {
			if !prev.IsNull() {
				s.broken = true
			}
		} else if !canon.PyEqual(prev, s.last) {
			s.broken = true
		}
		s.seen = true
		s.last = v.Field("event_id")
	}
	sort.Strings(actors)
	out := map[string]bool{}
	for _, a := range actors {
		out[a] = !chains[a].broken
	}
	return out
}

// ReferenceForkCount reproduces the number of forks the reference's
// detect_forks reports (SPEC §8.4): events with a non-null actor grouped by
// (actor, prev_event_hash); a group of n events counts n-1 forks.
func ReferenceForkCount(entries []canon.Value) int {
	groups := map[string]int{}
	for _, v := range entries {
		a := v.Field("actor")
		if v.Kind() != canon.Object || a.IsNull() {
			continue
		}
		ab, _ := canon.Encode(a)
		pb, _ := canon.Encode(v.Field("prev_event_hash"))
		groups[string(ab)+"\x00"+string(pb)]++
	}
	n := 0
	for _, c := range groups {
		n += c - 1
	}
	return n
}
