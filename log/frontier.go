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
		f[m.Key] = ActorHead{Head: head.Str(), Count: count}
	}
	return f, nil
}
