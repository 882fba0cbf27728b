package fusefs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/scan"
)

// tailWindow is how much of the indexed log's end must be unchanged for
// the index to be extended rather than rebuilt: a log rewritten from an
// earlier point (a merge) changes these bytes.
const tailWindow = 64 << 10

// logIndex lists the event lines of events.ndjson, so that timelines and
// fork evidence can be served from the file. It is extended as the log
// grows and rebuilt when the log was replaced or rewritten. Only the
// goroutine that builds views touches it.
type logIndex struct {
	// generation numbers indexes, so that files read through a rebuilt
	// index get new versions.
	generation uint64
	dev, ino   uint64
	size       int64 // bytes indexed, at a line end
	tail       [32]byte
	recs       []lineRec
	actors     []string
	actorIdx   map[string]int32
	byID       map[string]int32
	// firstChild is the first event after each (actor, prev); forks
	// lists, per such point, every event after it when there are several.
	firstChild map[string]int32
	forks      map[string][]int32
}

// lineRec is one event line: its bytes [off, off+n) including the line
// break, its actor and its event id.
type lineRec struct {
	off   int64
	n     int64
	actor int32
	id    string
	prev  string
}

func newLogIndex() *logIndex {
	return &logIndex{generation: indexGen.Add(1), actorIdx: map[string]int32{}, byID: map[string]int32{},
		firstChild: map[string]int32{}, forks: map[string][]int32{}}
}

var indexGen atomic.Uint64

func forkKey(actor, prev string) string { return actor + "\x00" + prev }

// growth is what extending an index added: the belief keys the new lines
// touch, for a view that updates only those.
type growth struct {
	keys map[string]bool
	// opaque is set when a new line's effect on the state cannot be
	// told from the line (not an event the reducer reads as usual).
	opaque bool
}

// note records what one new line does to the reducer state, as
// reducer.State.Apply reads it: OBSERVATION, ASSERTION, ATTESTATION and
// RETRACTION touch the belief "subject:predicate" of their payload (none
// when either is absent or empty), other types no belief. Anything the
// rules here do not cover exactly (non-string names, a payload that is
// not an object, an unparsable line) makes the growth opaque.
func (g *growth) note(it *scan.Item) {
	if it.Err != nil {
		g.opaque = true
		return
	}
	v := it.Value
	if v.Kind() != canon.Object {
		return
	}
	typ := v.Field("type")
	if typ.Kind() != canon.String {
		return
	}
	switch typ.Str() {
	case "OBSERVATION", "ASSERTION", "ATTESTATION", "RETRACTION":
	default:
		return
	}
	payload := v.Field("payload")
	if payload.Kind() != canon.Object {
		g.opaque = true
		return
	}
	subject, predicate := payload.Field("subject"), payload.Field("predicate")
	for _, n := range []canon.Value{subject, predicate} {
		switch n.Kind() {
		case canon.Null:
			return // absent: no belief
		case canon.String:
			if n.Str() == "" {
				return
			}
		default:
			g.opaque = true
			return
		}
	}
	g.keys[subject.Str()+":"+predicate.Str()] = true
}

// update brings x to the first size bytes of f, extending it when the
// already indexed part is unchanged and rebuilding it otherwise. It
// returns the index to use (x itself or a new one) and, when x was
// extended, what the new lines touch (nil after a rebuild).
func (x *logIndex) update(ctx context.Context, f *os.File, size int64) (*logIndex, *growth, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	var dev, ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev, ino = uint64(st.Dev), st.Ino
	}
	g := &growth{keys: map[string]bool{}}
	if x == nil || x.dev != dev || x.ino != ino || size < x.size || !x.tailMatches(f) {
		x = newLogIndex()
		x.dev, x.ino = dev, ino
		g = nil
	}
	if size == x.size {
		return x, g, nil
	}
	start := x.size
	end := start
	err = scan.Run(ctx, io.NewSectionReader(f, start, size-start), scan.Options{Offset: start, FirstLine: 1}, func(it *scan.Item) error {
		if !it.Terminated {
			return nil // a torn or unfinished last line: not an event yet
		}
		end = it.End
		if g != nil {
			g.note(it)
		}
		if it.Event == nil || it.EventErr != nil || it.Event.ID == "" {
			return nil
		}
		x.add(it.Offset, it.End, it.Event.Actor, it.Event.ID, it.Event.Prev)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Blank lines after the last event belong to the indexed part too.
	if end < size {
		if tail, err := readRange(f, end, size); err == nil && len(bytes.TrimSpace(tail)) == 0 {
			end = size
		}
	}
	x.size = end
	x.tail = tailSum(f, end)
	return x, g, nil
}

func (x *logIndex) add(off, end int64, actor, id, prev string) {
	a, ok := x.actorIdx[actor]
	if !ok {
		a = int32(len(x.actors))
		x.actors = append(x.actors, actor)
		x.actorIdx[actor] = a
	}
	i := int32(len(x.recs))
	x.recs = append(x.recs, lineRec{off: off, n: end - off, actor: a, id: id, prev: prev})
	if _, dup := x.byID[id]; !dup {
		x.byID[id] = i
	}
	k := forkKey(actor, prev)
	first, ok := x.firstChild[k]
	switch {
	case !ok:
		x.firstChild[k] = i
	case x.recs[first].id != id:
		if len(x.forks[k]) == 0 {
			x.forks[k] = []int32{first}
		}
		x.forks[k] = append(x.forks[k], i)
	}
}

func (x *logIndex) tailMatches(f *os.File) bool {
	return tailSum(f, x.size) == x.tail
}

// tailSum hashes the tailWindow bytes of f before end (fewer at the
// start of the file); a read error gives a sum that matches nothing.
func tailSum(f *os.File, end int64) [32]byte {
	b, err := readRange(f, max(0, end-tailWindow), end)
	if err != nil {
		return [32]byte{0xff}
	}
	return sha256.Sum256(b)
}

func readRange(f *os.File, from, to int64) ([]byte, error) {
	b := make([]byte, to-from)
	n, err := f.ReadAt(b, from)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	return b, err
}
