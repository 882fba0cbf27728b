package reducer

import (
	"slices"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
)

// record is one evidence record (the reference's Evidence dataclass).
type record struct {
	eventID    canon.Value
	actor      string
	ns         Namespace
	ts         optString
	value      canon.Value
	confidence float64
}

// evidence is the evidence of one key: every record in application order,
// and the records grouped by the canonical text of their value.
//
// Grouping is lazy: recs[:grouped] are in groups. Groups only grow, and a
// group's records are in application order, so the groups of recs[:n] for
// any n <= grouped are the prefixes of the groups holding indices below n.
// That is what lets a contested entry be a snapshot that records only n.
type evidence struct {
	recs    []record
	grouped int
	groups  []*group          // sorted by text once sorted is true
	byText  map[string]*group // nil while there is at most one group
	sorted  bool
}

// group is the records of one key whose values have the same canonical
// text, with their canonical encodings cached for hashing.
type group struct {
	text   string
	keyEnc []byte // canonical JSON of text followed by ':'
	idx    []int  // indices into recs, increasing
	enc    []byte // encodings of recs[idx[:len(ends)]], comma-joined
	ends   []int  // ends[i]: len(enc) once record idx[i] is encoded
}

// groupUpTo groups recs[:n]. It fails, leaving the records from the first
// bad one ungrouped, when a value cannot be canonicalised: the reference's
// contest raises there.
func (e *evidence) groupUpTo(n int) error {
	var buf [128]byte
	for ; e.grouped < n; e.grouped++ {
		text, err := canon.AppendEncode(buf[:0], e.recs[e.grouped].value)
		if err != nil {
			return err
		}
		g := e.find(text)
		if g == nil {
			g = &group{text: string(text)}
			g.keyEnc, _ = canon.AppendString(nil, g.text)
			g.keyEnc = append(g.keyEnc, ':')
			e.add(g)
		}
		g.idx = append(g.idx, e.grouped)
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

func (e *evidence) add(g *group) {
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
		slices.SortFunc(e.groups, func(a, b *group) int { return strings.Compare(a.text, b.text) })
		e.sorted = true
	}
	return e.groups
}

// count returns how many of g's records are among recs[:n].
func (g *group) count(n int) int {
	i, _ := slices.BinarySearch(g.idx, n)
	return i
}

// encodeUpTo makes sure the first k records of g are encoded and returns
// their comma-joined encodings.
func (g *group) encodeUpTo(recs []record, k int) ([]byte, error) {
	for len(g.ends) < k {
		var err error
		if len(g.ends) > 0 {
			g.enc = append(g.enc, ',')
		}
		if g.enc, err = recs[g.idx[len(g.ends)]].appendEncode(g.enc); err != nil {
			// Drop the partial record and its comma.
			if len(g.ends) > 0 {
				g.enc = g.enc[:g.ends[len(g.ends)-1]]
			} else {
				g.enc = g.enc[:0]
			}
			return nil, err
		}
		g.ends = append(g.ends, len(g.enc))
	}
	if k == 0 {
		return nil, nil
	}
	return g.enc[:g.ends[k-1]], nil
}

// appendEncode appends the canonical JSON of the record's to_dict().
func (r *record) appendEncode(dst []byte) ([]byte, error) {
	var err error
	dst = append(dst, `{"actor":`...)
	dst, _ = canon.AppendString(dst, r.actor)
	dst = append(dst, `,"confidence":`...)
	if dst, err = canon.AppendFloat(dst, r.confidence); err != nil {
		return dst, err
	}
	dst = append(dst, `,"event_id":`...)
	if dst, err = canon.AppendEncode(dst, r.eventID); err != nil {
		return dst, err
	}
	dst = append(dst, `,"namespace":"`...)
	dst = append(dst, namespaceNames[r.ns]...)
	dst = append(dst, `","timestamp_utc":`...)
	dst = appendOptString(dst, r.ts)
	dst = append(dst, `,"value":`...)
	if dst, err = canon.AppendEncode(dst, r.value); err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}

func appendOptString(dst []byte, o optString) []byte {
	if !o.valid {
		return append(dst, "null"...)
	}
	dst, _ = canon.AppendString(dst, o.s) // strings in a State are valid UTF-8
	return dst
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
