package reducer

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
)

// record is one evidence record (the reference's Evidence dataclass) in
// value form. Records are kept as canonical bytes (see evidence); this form
// is used to build them and for the few that cannot be canonicalised.
type record struct {
	eventID    canon.Value
	value      canon.Value
	actor      string
	ts         optString
	confidence float64
	ns         Namespace
}

// evidence is the evidence index of one key.
//
// Records are stored as their canonical JSON (the to_dict() form) in the
// state's arena: they are encoded once, while the event is at hand, never
// move, and contested entries are written by copying them. The arena holds
// no pointers, which keeps a large state cheap for the garbage collector.
// A record that cannot be canonicalised (a non-finite float) takes no
// bytes and is kept in odd instead.
//
// Records are grouped by the canonical text of their value, which is the
// tail of their encoding. Grouping is lazy (recs[:grouped] are grouped),
// groups only grow, and a group lists its records in application order, so
// the groups of the first n records, for any n <= grouped, are prefixes of
// the groups. That is why a contested entry only needs to record n.
type evidence struct {
	ar   *arena
	recs []recRef

	odd map[int]*oddRecord // records kept as values, not in the arena
	// badValues counts records whose value cannot be canonicalised: the
	// reference's contest raises on those.
	badValues int

	grouped int
	groups  []*group          // sorted by text while sorted is true
	byText  map[string]*group // nil while there is at most one group
	sorted  bool
}

// recRef locates a record's encoding in the arena: arena.chunks[chunk]
// [start:end], with the value's text from vstart to end-1.
type recRef struct {
	chunk, start, end, vstart int32
}

// arena is append-only storage for record encodings, shared by all keys
// of a State. Chunks are never reallocated, so stored bytes never move or
// change; only the last chunk has room to grow.
type arena struct {
	chunks  [][]byte
	scratch []byte
	floats  floatCache
}

// maxDepth bounds the nesting of values the State stores and decodes, far
// beyond what canon.Parse lets through by default (256).
const maxDepth = 10000

// recordLimits parse and check stored records.
var recordLimits = canon.Limits{MaxSize: maxRecord, MaxDepth: maxDepth + 1}

const (
	arenaChunk = 256 << 10
	// maxRecord is the largest encoding stored in the arena; larger
	// records are kept as odd values, so offsets fit in int32.
	maxRecord = 1 << 30
)

// arenaAdd stores b in a and returns its location.
func arenaAdd[T []byte | string](a *arena, b T) (chunk, start int32) {
	n := len(a.chunks)
	if n == 0 || cap(a.chunks[n-1])-len(a.chunks[n-1]) < len(b) {
		a.chunks = append(a.chunks, make([]byte, 0, max(arenaChunk, len(b))))
		n++
	}
	c := &a.chunks[n-1]
	start = int32(len(*c))
	*c = append(*c, b...)
	return int32(n - 1), start
}

// group is the records of one key whose values have the same canonical
// text.
type group struct {
	text   string  // canonical JSON of the value
	keyEnc []byte  // canonical JSON of text followed by ':'
	idx    []int32 // record indices, increasing
}

func (e *evidence) len() int { return len(e.recs) }

// recordBytes returns the canonical encoding of record i (empty when odd).
func (e *evidence) recordBytes(i int) []byte {
	r := e.recs[i]
	return e.ar.chunks[r.chunk][r.start:r.end]
}

// oddRecord is a record that is not in the arena, and why: it cannot be
// canonicalised, or it is too large or too deeply nested to be stored and
// parsed back. A contested entry that shows it cannot be hashed.
type oddRecord struct {
	record
	err error
}

var (
	errRecordTooLarge = errors.New("reducer: evidence record larger than 1 GiB")
	errRecordTooDeep  = fmt.Errorf("reducer: evidence record nested deeper than %d levels", maxDepth)
)

// add appends a record.
func (e *evidence) add(r *record) {
	i := e.len()
	buf, vstart, err := r.appendEncode(e.ar.scratch[:0], &e.ar.floats)
	e.ar.scratch = buf[:0]
	switch {
	case err != nil:
	case len(buf) > maxRecord:
		err = errRecordTooLarge
	case tooDeep(r.eventID, maxDepth) || tooDeep(r.value, maxDepth):
		err = errRecordTooDeep
	}
	if err != nil {
		if e.odd == nil {
			e.odd = make(map[int]*oddRecord)
		}
		e.odd[i] = &oddRecord{record: *r, err: err}
		if _, err := canon.Text(r.value); err != nil {
			e.badValues++
		}
		e.recs = append(e.recs, recRef{})
		return
	}
	chunk, start := arenaAdd(e.ar, buf)
	e.recs = append(e.recs, recRef{chunk: chunk, start: start, end: start + int32(len(buf)), vstart: start + int32(vstart)})
}

// tooDeep reports whether v nests arrays and objects more than levels deep.
func tooDeep(v canon.Value, levels int) bool {
	switch v.Kind() {
	case canon.Array:
		if levels == 0 {
			return true
		}
		for i := range v.Len() {
			if tooDeep(v.Index(i), levels-1) {
				return true
			}
		}
	case canon.Object:
		if levels == 0 {
			return true
		}
		for _, m := range v.Members() {
			if tooDeep(m.Value, levels-1) {
				return true
			}
		}
	}
	return false
}

// addEncoded appends a record given as its canonical encoding, whose
// value's text starts at vstart.
func (e *evidence) addEncoded(b string, vstart int) {
	chunk, start := arenaAdd(e.ar, b)
	e.recs = append(e.recs, recRef{chunk: chunk, start: start, end: start + int32(len(b)), vstart: start + int32(vstart)})
}

// valueText returns the canonical text of record i's value. It allocates
// only for odd records.
func (e *evidence) valueText(i int) ([]byte, error) {
	if r := e.odd[i]; r != nil {
		return canon.Encode(r.value)
	}
	r := e.recs[i]
	return e.ar.chunks[r.chunk][r.vstart : r.end-1], nil // the encoding ends with the value and '}'
}

// groupUpTo groups the first n records.
func (e *evidence) groupUpTo(n int) error {
	for ; e.grouped < n; e.grouped++ {
		text, err := e.valueText(e.grouped)
		if err != nil {
			return err
		}
		g := e.find(text)
		if g == nil {
			g = &group{text: string(text)}
			g.keyEnc, _ = canon.AppendString(nil, g.text)
			g.keyEnc = append(g.keyEnc, ':')
			e.addGroup(g)
		}
		g.idx = append(g.idx, int32(e.grouped))
	}
	return nil
}

func (e *evidence) find(text []byte) *group {
	if e.byText != nil {
		return e.byText[string(text)]
	}
	if len(e.groups) == 1 && e.groups[0].text == string(text) {
		return e.groups[0]
	}
	return nil
}

func (e *evidence) addGroup(g *group) {
	switch n := len(e.groups); {
	case n == 0:
		e.sorted = true
	case e.sorted && g.text < e.groups[n-1].text:
		e.sorted = false
	}
	if len(e.groups) == 1 {
		e.byText = map[string]*group{e.groups[0].text: e.groups[0]}
	}
	if e.byText != nil {
		e.byText[g.text] = g
	}
	e.groups = append(e.groups, g)
}

// sortedGroups returns the groups in canonical (text) order. It sorts in
// place, so it counts as a modification of the state.
func (e *evidence) sortedGroups() []*group {
	if !e.sorted {
		slices.SortFunc(e.groups, cmpGroup)
		e.sorted = true
	}
	return e.groups
}

// sortedGroupsCopy is sortedGroups without modifying e.
func (e *evidence) sortedGroupsCopy() []*group {
	if e.sorted {
		return e.groups
	}
	gs := slices.Clone(e.groups)
	slices.SortFunc(gs, cmpGroup)
	return gs
}

func cmpGroup(a, b *group) int { return strings.Compare(a.text, b.text) }

// count returns how many of g's records are among the first n.
func (g *group) count(n int) int {
	i, _ := slices.BinarySearch(g.idx, int32(n))
	return i
}

// recordValue returns record i as the reference's to_dict() would.
func (e *evidence) recordValue(i int) canon.Value {
	if r := e.odd[i]; r != nil {
		return r.toValue()
	}
	v, err := recordLimits.Parse(e.recordBytes(i))
	if err != nil {
		panic("bug: reducer: stored evidence record does not parse: " + err.Error())
	}
	return v
}

// appendEncode appends the canonical JSON of the record's to_dict() and
// returns where the value's text starts.
func (r *record) appendEncode(dst []byte, fc *floatCache) ([]byte, int, error) {
	var err error
	dst = append(dst, `{"actor":`...)
	if dst, err = canon.AppendString(dst, r.actor); err != nil {
		return dst, 0, err
	}
	dst = append(dst, `,"confidence":`...)
	if dst, err = fc.appendFloat(dst, r.confidence); err != nil {
		return dst, 0, err
	}
	dst = append(dst, `,"event_id":`...)
	if dst, err = canon.AppendEncode(dst, r.eventID); err != nil {
		return dst, 0, err
	}
	dst = append(dst, `,"namespace":"`...)
	dst = append(dst, namespaceNames[r.ns]...)
	dst = append(dst, `","timestamp_utc":`...)
	if dst, err = appendOptString(dst, r.ts); err != nil {
		return dst, 0, err
	}
	dst = append(dst, `,"value":`...)
	vstart := len(dst)
	if dst, err = canon.AppendEncode(dst, r.value); err != nil {
		return dst, 0, err
	}
	return append(dst, '}'), vstart, nil
}

func appendOptString(dst []byte, o optString) ([]byte, error) {
	if !o.valid {
		return append(dst, "null"...), nil
	}
	return canon.AppendString(dst, o.s)
}

// toValue returns the record as the reference's to_dict() would.
func (r *record) toValue() canon.Value {
	return canon.ObjectValue(
		canon.Member{Key: "actor", Value: canon.StringValue(r.actor)},
		canon.Member{Key: "confidence", Value: canon.FloatValue(r.confidence)},
		canon.Member{Key: "event_id", Value: r.eventID},
		canon.Member{Key: "namespace", Value: canon.StringValue(namespaceNames[r.ns])},
		canon.Member{Key: "timestamp_utc", Value: r.ts.value()},
		canon.Member{Key: "value", Value: r.value},
	)
}
