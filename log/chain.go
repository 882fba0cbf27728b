package log

import (
	"crypto/sha256"
	"fmt"
	"sort"
)

// Problem kinds found by Chains.
const (
	// BreakMissingPrev: prev_event_hash names an event not in the log.
	BreakMissingPrev = "missing_predecessor"
	// BreakLaterPrev: prev_event_hash names an event that appears only
	// later in the file.
	BreakLaterPrev = "predecessor_after_event"
	// BreakOtherActor: prev_event_hash names another actor's event.
	BreakOtherActor = "predecessor_of_other_actor"
	// ForkSamePrev: two different events of one actor after the same
	// predecessor (or two first events).
	ForkSamePrev = "same_predecessor"
	// ForkSameID: one event_id carried by two different contents.
	ForkSameID = "same_event_id"
)

// Break is a link of an actor's chain that does not hold.
type Break struct {
	Kind    string `json:"kind"`
	Line    int    `json:"line"`
	Actor   string `json:"actor"`
	EventID string `json:"event_id"`
	Prev    string `json:"prev_event_hash"`
	// PrevActor is the actor of the named predecessor (BreakOtherActor).
	PrevActor string `json:"prev_actor,omitempty"`
}

func (b Break) String() string {
	switch b.Kind {
	case BreakMissingPrev:
		return fmt.Sprintf("line %d: actor %q: event %s follows %s, which is not in the log", b.Line, b.Actor, b.EventID, b.Prev)
	case BreakLaterPrev:
		return fmt.Sprintf("line %d: actor %q: event %s follows %s, which appears only later in the file", b.Line, b.Actor, b.EventID, b.Prev)
	case BreakOtherActor:
		return fmt.Sprintf("line %d: actor %q: event %s follows %s, an event of actor %q", b.Line, b.Actor, b.EventID, b.Prev, b.PrevActor)
	}
	return fmt.Sprintf("line %d: %s", b.Line, b.Kind)
}

// ForkEvent is one side of a fork.
type ForkEvent struct {
	EventID string `json:"event_id"`
	Line    int    `json:"line"`
}

// Fork is a point where an actor's history split.
type Fork struct {
	Kind  string `json:"kind"`
	Actor string `json:"actor"`
	// Prev is the shared predecessor ("" for two first events) for
	// ForkSamePrev; the shared event_id for ForkSameID.
	Prev   string      `json:"fork_point"`
	Events []ForkEvent `json:"events"`
}

func (f Fork) String() string {
	if f.Kind == ForkSameID {
		return fmt.Sprintf("actor %q: event_id %s has %d different contents (lines %s)", f.Actor, f.Prev, len(f.Events), f.lines())
	}
	point := f.Prev
	if point == "" {
		point = "the start of the chain"
	}
	return fmt.Sprintf("actor %q: %d events follow %s (lines %s)", f.Actor, len(f.Events), point, f.lines())
}

func (f Fork) lines() string {
	s := ""
	for i, e := range f.Events {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(e.Line)
	}
	return s
}

// ActorChain summarises one actor.
type ActorChain struct {
	Actor  string `json:"actor"`
	Events int    `json:"events"`
	// Head is the actor's last event in file order: the one a new event
	// of this actor follows.
	Head string `json:"head"`
}

// Duplicate is an event that appears more than once with identical
// content (harmless; the reference drops repeats when merging).
type Duplicate struct {
	EventID string `json:"event_id"`
	Lines   []int  `json:"lines"`
}

type seenEvent struct {
	actor string
	line  int
	hash  [32]byte
}

type chainKey struct{ actor, prev string }

// Chains checks per-actor hash chains and finds forks. Feed it every event
// in file order with Add, then call Finish. Memory is proportional to the
// number of events (ids and content hashes), not their size.
type Chains struct {
	seen     map[string]*seenEvent
	children map[chainKey]int // index into forks+1, or -1: one child seen
	first    map[chainKey]ForkEvent
	actors   map[string]*ActorChain
	pending  []Break // missing predecessors, resolved in Finish
	breaks   []Break
	forks    []Fork
	dupes    map[string]*Duplicate
	idForks  map[string]int
}

// NewChains returns an empty checker.
func NewChains() *Chains {
	return &Chains{
		seen:     map[string]*seenEvent{},
		children: map[chainKey]int{},
		first:    map[chainKey]ForkEvent{},
		actors:   map[string]*ActorChain{},
		dupes:    map[string]*Duplicate{},
		idForks:  map[string]int{},
	}
}

// ContentHash is the hash Chains uses to tell identical events from
// different ones: SHA-256 of the canonical line.
func ContentHash(canonicalLine []byte) [32]byte { return sha256.Sum256(canonicalLine) }

// Add records event e found at line with the given content hash.
func (c *Chains) Add(e *Event, line int, hash [32]byte) {
	if s, ok := c.seen[e.ID]; ok {
		if s.hash == hash {
			d := c.dupes[e.ID]
			if d == nil {
				d = &Duplicate{EventID: e.ID, Lines: []int{s.line}}
				c.dupes[e.ID] = d
			}
			d.Lines = append(d.Lines, line)
			return
		}
		i, ok := c.idForks[e.ID]
		if !ok {
			i = len(c.forks)
			c.idForks[e.ID] = i
			c.forks = append(c.forks, Fork{Kind: ForkSameID, Actor: s.actor, Prev: e.ID, Events: []ForkEvent{{e.ID, s.line}}})
		}
		c.forks[i].Events = append(c.forks[i].Events, ForkEvent{e.ID, line})
		return
	}
	c.seen[e.ID] = &seenEvent{actor: e.Actor, line: line, hash: hash}
	a := c.actors[e.Actor]
	if a == nil {
		a = &ActorChain{Actor: e.Actor}
		c.actors[e.Actor] = a
	}
	a.Events++
	a.Head = e.ID

	if e.HasPrev {
		p, ok := c.seen[e.Prev]
		switch {
		case !ok:
			c.pending = append(c.pending, Break{Kind: BreakMissingPrev, Line: line, Actor: e.Actor, EventID: e.ID, Prev: e.Prev})
			return
		case p.actor != e.Actor:
			c.breaks = append(c.breaks, Break{Kind: BreakOtherActor, Line: line, Actor: e.Actor, EventID: e.ID, Prev: e.Prev, PrevActor: p.actor})
			return
		}
	}
	k := chainKey{e.Actor, e.Prev}
	switch i, ok := c.children[k]; {
	case !ok:
		c.children[k] = -1
		c.first[k] = ForkEvent{e.ID, line}
	case i == -1:
		c.children[k] = len(c.forks)
		c.forks = append(c.forks, Fork{Kind: ForkSamePrev, Actor: e.Actor, Prev: e.Prev, Events: []ForkEvent{c.first[k], {e.ID, line}}})
	default:
		c.forks[i].Events = append(c.forks[i].Events, ForkEvent{e.ID, line})
	}
}

// ChainReport is the result of checking all chains.
type ChainReport struct {
	Actors     []ActorChain `json:"actors"`
	Breaks     []Break      `json:"breaks"`
	Forks      []Fork       `json:"forks"`
	Duplicates []Duplicate  `json:"duplicates"`
}

// OK reports whether every chain holds and nothing forked.
func (r *ChainReport) OK() bool { return len(r.Breaks) == 0 && len(r.Forks) == 0 }

// Finish returns the report. Actors are sorted by name, problems by line.
func (c *Chains) Finish() *ChainReport {
	r := &ChainReport{Breaks: append([]Break(nil), c.breaks...), Forks: c.forks}
	for _, b := range c.pending {
		if p, ok := c.seen[b.Prev]; ok {
			if p.actor != b.Actor {
				b.Kind, b.PrevActor = BreakOtherActor, p.actor
			} else {
				b.Kind = BreakLaterPrev
			}
		}
		r.Breaks = append(r.Breaks, b)
	}
	sort.SliceStable(r.Breaks, func(i, j int) bool { return r.Breaks[i].Line < r.Breaks[j].Line })
	for _, a := range c.actors {
		r.Actors = append(r.Actors, *a)
	}
	sort.Slice(r.Actors, func(i, j int) bool { return r.Actors[i].Actor < r.Actors[j].Actor })
	for _, d := range c.dupes {
		r.Duplicates = append(r.Duplicates, *d)
	}
	sort.Slice(r.Duplicates, func(i, j int) bool { return r.Duplicates[i].Lines[0] < r.Duplicates[j].Lines[0] })
	return r
}

// Head returns an actor's last event id in file order and its event count.
func (c *Chains) Head(actor string) (string, int) {
	a := c.actors[actor]
	if a == nil {
		return "", 0
	}
	return a.Head, a.Events
}

// Line returns the line where an event id was first added.
func (c *Chains) Line(id string) (int, bool) {
	s, ok := c.seen[id]
	if !ok {
		return 0, false
	}
	return s.line, true
}

// Has reports whether an event id was added.
func (c *Chains) Has(id string) bool {
	_, ok := c.seen[id]
	return ok
}
