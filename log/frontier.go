package log

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"

	"github.com/backpack-field/backpack/internal/canon"
)

// FrontierFormat names the frontier's JSON form.
const FrontierFormat = "backpack.frontier.v1"

// maxFrontier bounds a parsed frontier.
const (
	maxFrontierBytes  = 8 << 20
	maxFrontierActors = 100000
)

// ActorHead is what a replica holds of one actor: the chain's newest event
// (in the merge order) and how many of the actor's events it holds.
type ActorHead struct {
	Head  string `json:"head"`
	Count int64  `json:"count"`
	// Ancestors optionally name earlier events of the same chain (newest
	// first, at counts Count-1, Count-2, Count-4, ...), so that a sender
	// that does not hold Head can still find where the chains meet and
	// send only what follows (see Ancestors).
	Ancestors []Ancestor `json:"ancestors,omitempty"`
}

// Ancestor is an earlier event of an actor's chain: the event at position
// Count (1-based) in the chain.
type Ancestor struct {
	Count int64  `json:"count"`
	ID    string `json:"id"`
}

// maxAncestors bounds the ancestors of one actor in a parsed frontier
// (2^64 events need 64).
const maxAncestors = 64

// AncestorCounts returns the chain positions a frontier names ancestors
// at for a chain of count events: count-1, count-2, count-4, ... down to
// 1, each once.
func AncestorCounts(count int64) []int64 {
	var out []int64
	for step := int64(1); count-step >= 1 && len(out) < maxAncestors; step *= 2 {
		out = append(out, count-step)
	}
	if n := len(out); n > 0 && out[n-1] != 1 && len(out) < maxAncestors {
		out = append(out, 1)
	}
	return out
}

// Frontier (a state vector) says what a replica holds: per actor label,
// its head event and event count. Two replicas with equal frontiers hold
// the same events, unless an actor forked (then Count tells them apart
// only if the sides differ in size; the fork itself travels as evidence).
type Frontier map[string]ActorHead

// Value returns f as a canonical JSON object
// {"actors": {actor: {"count", "head"}}, "format": FrontierFormat}.
func (f Frontier) Value() canon.Value {
	var actors canon.ObjectBuilder
	for a, h := range f {
		var o canon.ObjectBuilder
		o.Set("head", canon.StringValue(h.Head)).Set("count", canon.IntValue(h.Count))
		if len(h.Ancestors) > 0 {
			anc := make([]canon.Value, len(h.Ancestors))
			for i, x := range h.Ancestors {
				var ao canon.ObjectBuilder
				ao.Set("count", canon.IntValue(x.Count)).Set("id", canon.StringValue(x.ID))
				anc[i] = ao.Value()
			}
			o.Set("ancestors", canon.ArrayValue(anc...))
		}
		actors.Set(a, o.Value())
	}
	var b canon.ObjectBuilder
	b.Set("format", canon.StringValue(FrontierFormat)).Set("actors", actors.Value())
	return b.Value()
}

// Encode returns the canonical JSON bytes of f.
func (f Frontier) Encode() []byte { return canon.MustEncode(f.Value()) }

// Digest is SHA-256 of the canonical encoding: equal frontiers have equal
// digests, so two in-sync replicas can compare 32 bytes.
func (f Frontier) Digest() [32]byte { return sha256.Sum256(f.Encode()) }

// Actors returns the actor labels, sorted.
func (f Frontier) Actors() []string {
	out := make([]string, 0, len(f))
	for a := range f {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// ErrBadFrontier is returned for a frontier that does not parse.
var ErrBadFrontier = errors.New("log: bad frontier")

// ParseFrontier parses the JSON form of a frontier (bounded).
func ParseFrontier(data []byte) (Frontier, error) {
	if len(data) > maxFrontierBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadFrontier, maxFrontierBytes)
	}
	v, err := canon.Limits{MaxSize: maxFrontierBytes, MaxDepth: 8}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFrontier, err)
	}
	return FrontierFromValue(v)
}

// FrontierFromValue reads a frontier from a parsed JSON value.
func FrontierFromValue(v canon.Value) (Frontier, error) {
	if v.Field("format").Str() != FrontierFormat {
		return nil, fmt.Errorf("%w: format is not %q", ErrBadFrontier, FrontierFormat)
	}
	actors := v.Field("actors")
	if actors.Kind() != canon.Object || actors.Len() > maxFrontierActors {
		return nil, fmt.Errorf("%w: actors is not an object of at most %d members", ErrBadFrontier, maxFrontierActors)
	}
	f := Frontier{}
	for _, m := range actors.Members() {
		head := m.Value.Field("head")
		count, ok := m.Value.Field("count").Int64()
		if head.Kind() != canon.String || !ok || count < 0 {
			return nil, fmt.Errorf("%w: actor %q needs a string head and a non-negative integer count", ErrBadFrontier, m.Key)
		}
		ah := ActorHead{Head: head.Str(), Count: count}
		if anc := m.Value.Field("ancestors"); anc.Kind() != canon.Null {
			if anc.Kind() != canon.Array || anc.Len() > maxAncestors {
				return nil, fmt.Errorf("%w: actor %q: ancestors is not an array of at most %d members", ErrBadFrontier, m.Key, maxAncestors)
			}
			for _, x := range anc.Elems() {
				c, ok := x.Field("count").Int64()
				id := x.Field("id")
				if !ok || c < 1 || c >= count || id.Kind() != canon.String {
					return nil, fmt.Errorf("%w: actor %q: an ancestor needs an id and a count between 1 and the chain's", ErrBadFrontier, m.Key)
				}
				ah.Ancestors = append(ah.Ancestors, Ancestor{Count: c, ID: id.Str()})
			}
		}
		f[m.Key] = ah
	}
	return f, nil
}

// WithoutAncestors returns f with only heads and counts (what bundle
// headers carry).
func (f Frontier) WithoutAncestors() Frontier {
	out := make(Frontier, len(f))
	for a, h := range f {
		out[a] = ActorHead{Head: h.Head, Count: h.Count}
	}
	return out
}
