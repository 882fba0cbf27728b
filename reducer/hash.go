package reducer

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"

	"github.com/backpack-field/backpack/internal/canon"
)

// The state hash is SHA-256 over the canonical JSON of
//
//	{"archived":{...},"canonical":{...},"contested":{...},"local":{...},"metadata_partial":{...}}
//
// Each entry's encoding is cached in its slot and redone only when the
// entry changed. Hashing then streams the cached bytes, and does not even
// do that for the unchanged prefix of the document: every markEvery bytes
// the walk saves the SHA-256 midstate, and the next walk resumes from the
// last mark before the first changed entry. Sections only grow (dead
// entries keep their place), so positions before a change are stable.

// markEvery is the spacing of resumable marks, in bytes (a variable for tests).
var markEvery = 32 << 10

// hashCache is the incremental hashing state of a State.
type hashCache struct {
	valid bool   // hash is the hash of the current state
	hash  string // lowercase hex
	marks []mark // in document order
	buf   []byte // reused write buffer
}

// mark is a resumable point of the last walk: the SHA-256 state after all
// bytes that precede the live entry at order[ns][pos].
type mark struct {
	ns    Namespace
	pos   int
	ks    *keyState
	comma bool // an entry of ns precedes (a comma is due)
	state []byte
}

var sectionHeads = [numNamespaces]string{
	`{"archived":{`, `},"canonical":{`, `},"contested":{`, `},"local":{`,
}

// StateHash returns the reducer's state_hash: lowercase hex SHA-256 of the
// canonical hash preimage (SPEC §6.9). It fails like the reference when
// the state holds a value that cannot be canonicalised (a non-finite float;
// the error wraps canon.ErrNonFinite), and with the *ApplyError of a state
// that an event stopped.
//
// The cost is that of encoding the entries changed since the last call
// plus hashing the document from shortly before the first change.
func (s *State) StateHash() (string, error) {
	if s.err != nil {
		return "", s.err
	}
	if s.hc.valid {
		return s.hc.hash, nil
	}
	s.init()
	s.mergePending()
	fns, fpos := s.firstChange()

	h := sha256.New()
	w := hashWriter{h: h, buf: s.hc.buf[:0]}
	defer func() { s.hc.buf = w.buf[:0] }()
	marks := s.hc.marks
	keep := 0
	for keep < len(marks) && before(marks[keep].ns, marks[keep].pos, fns, fpos) {
		keep++
	}
	startNs, startPos, comma := Namespace(0), 0, false
	resumed := false
	if keep > 0 {
		m := marks[keep-1]
		ok := int(m.ns) < len(s.sec) && m.pos < len(s.sec[m.ns].order) && s.sec[m.ns].order[m.pos] == m.ks
		if ok {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.state); err != nil {
				panic("bug: reducer: restore sha256 state: " + err.Error())
			}
			startNs, startPos, comma, resumed = m.ns, m.pos, m.comma, true
		} else {
			keep = 0
		}
	}
	clear(marks[keep:])
	s.hc.marks = marks[:keep]

	for ns := startNs; ns < numNamespaces; ns++ {
		pos := 0
		if resumed && ns == startNs {
			pos = startPos
		} else {
			w.writeString(sectionHeads[ns])
			comma = false
		}
		order := s.sec[ns].order
		for ; pos < len(order); pos++ {
			ks := order[pos]
			sl := &ks.slot[ns]
			if !sl.live {
				if sl.dirty {
					sl.enc, sl.dirty = nil, false
				}
				continue
			}
			if w.sinceMark >= markEvery {
				s.hc.marks = append(s.hc.marks, mark{ns: ns, pos: pos, ks: ks, comma: comma, state: w.midstate()})
			}
			if sl.dirty {
				if err := s.encodeSlot(ks, ns); err != nil {
					return "", err
				}
			}
			if comma {
				w.writeByte(',')
			}
			comma = true
			w.write(ks.keyEnc)
			s.writeSlot(&w, ks, ns)
		}
	}
	w.writeString(`},"metadata_partial":`)
	meta, err := s.appendMetadata(w.buf, false)
	if err != nil {
		return "", err
	}
	w.buf = append(meta, '}')
	w.flush()
	s.hc.hash = hex.EncodeToString(h.Sum(nil))
	s.hc.valid = true
	return s.hc.hash, nil
}

// before reports whether position (ans, apos) precedes (bns, bpos).
func before(ans Namespace, apos int, bns Namespace, bpos int) bool {
	return ans < bns || (ans == bns && apos < bpos)
}

// firstChange returns the first position whose slot changed since the last
// walk, or (numNamespaces, 0) when only the metadata may have changed.
func (s *State) firstChange() (Namespace, int) {
	for ns := range numNamespaces {
		for pos, ks := range s.sec[ns].order {
			if ks.slot[ns].dirty {
				return ns, pos
			}
		}
	}
	return numNamespaces, 0
}

// encodeSlot refreshes the cached encoding of ks's entry in ns.
func (s *State) encodeSlot(ks *keyState, ns Namespace) error {
	if ks.keyErr != nil {
		return fmt.Errorf("reducer: %s key %s cannot be canonicalised: %w", ns, strconv.Quote(ks.key), ks.keyErr)
	}
	sl := &ks.slot[ns]
	var enc []byte // never reuse sl.enc: a Clone may share it
	var err error
	switch ns {
	case Archived:
		err = ks.encodeArchived()
	case Canonical:
		enc, err = ks.canon.appendEncode(nil, nil, false)
	case Local:
		enc, err = ks.local.appendEncode(nil, &s.ar.floats)
	case Contested:
		enc, err = ks.encodeContested()
	}
	if err != nil {
		return fmt.Errorf("reducer: %s entry %s cannot be canonicalised: %w", ns, strconv.Quote(ks.key), err)
	}
	sl.enc, sl.dirty = enc, false
	return nil
}

// writeSlot writes the cached encoding of ks's entry in ns.
func (s *State) writeSlot(w *hashWriter, ks *keyState, ns Namespace) {
	switch ns {
	case Archived:
		w.writeByte('[')
		w.write(ks.archEnc)
		w.writeByte(']')
	case Contested:
		c := &ks.cont
		switch {
		case c.full != nil:
			w.write(c.full)
		case c.written:
			c.full = ks.appendContestedBody(append([]byte(nil), ks.slot[ns].enc...))
			w.write(c.full)
		default:
			c.written = true
			w.write(ks.slot[ns].enc)
			ks.writeContestedBody(w)
		}
	default:
		w.write(ks.slot[ns].enc)
	}
}

func (ks *keyState) encodeArchived() error {
	for ks.archN < len(ks.arch) {
		a := &ks.arch[ks.archN]
		n := len(ks.archEnc)
		enc := ks.archEnc
		if n > 0 {
			enc = append(enc, ',')
		}
		enc, err := a.appendEncode(enc, &a.supersededBy, a.retracted)
		if err != nil {
			ks.archEnc = ks.archEnc[:n]
			return err
		}
		ks.archEnc = enc
		ks.archN++
	}
	return nil
}

// appendEncode appends a canonical entry, or an archived copy of one when
// supersededBy is not nil.
func (c *canonEntry) appendEncode(dst []byte, supersededBy *canon.Value, retracted bool) ([]byte, error) {
	var err error
	dst = append(dst, `{"attestation_event_id":`...)
	if dst, err = canon.AppendEncode(dst, c.attestationEventID); err != nil {
		return dst, err
	}
	dst = append(dst, `,"attested_by":`...)
	if dst, err = canon.AppendEncode(dst, c.attestedBy); err != nil {
		return dst, err
	}
	dst = append(dst, `,"provenance":`...)
	if dst, err = canon.AppendEncode(dst, c.provenance); err != nil {
		return dst, err
	}
	if retracted {
		dst = append(dst, `,"retracted":true`...)
	}
	if supersededBy != nil {
		dst = append(dst, `,"superseded_by":`...)
		if dst, err = canon.AppendEncode(dst, *supersededBy); err != nil {
			return dst, err
		}
	}
	dst = append(dst, `,"value":`...)
	if dst, err = canon.AppendEncode(dst, c.value); err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}

func (l *localEntry) appendEncode(dst []byte, fc *floatCache) ([]byte, error) {
	var err error
	dst = append(dst, `{"actor":`...)
	dst, _ = canon.AppendString(dst, l.actor)
	dst = append(dst, `,"confidence":`...)
	if dst, err = fc.appendFloat(dst, l.confidence); err != nil {
		return dst, err
	}
	dst = append(dst, `,"evidence_count":`...)
	dst = strconv.AppendInt(dst, l.evidenceCount, 10)
	dst = append(dst, `,"provenance":`...)
	if dst, err = canon.AppendEncode(dst, l.provenance); err != nil {
		return dst, err
	}
	dst = append(dst, `,"timestamp":`...)
	if dst, err = appendOptString(dst, l.ts); err != nil {
		return dst, err
	}
	dst = append(dst, `,"value":`...)
	if dst, err = canon.AppendEncode(dst, l.value); err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}

// writeContestedBody writes the groups and the tail of ks's contested
// entry.
func (ks *keyState) writeContestedBody(w *hashWriter) {
	c := &ks.cont
	for i, p := range c.pieces {
		if i > 0 {
			w.writeByte(',')
		}
		w.write(p.keyEnc)
		w.writeByte('[')
		for j, idx := range p.idx {
			if j > 0 {
				w.writeByte(',')
			}
			w.write(ks.ev.recordBytes(int(idx)))
		}
		w.writeByte(']')
	}
	w.write(c.tail)
}

// appendContestedBody appends what writeContestedBody writes.
func (ks *keyState) appendContestedBody(dst []byte) []byte {
	w := hashWriter{buf: dst}
	ks.writeContestedBody(&w)
	return w.buf
}

// encodeContested sets the encoding of ks's contested entry: the head in
// the returned bytes, the groups in pieces and the rest in tail.
func (ks *keyState) encodeContested() ([]byte, error) {
	c := &ks.cont
	c.pieces, c.tail, c.full, c.written = nil, nil, nil, false
	if c.literal != nil {
		return canon.AppendEncode(nil, *c.literal)
	}
	ev := &ks.ev
	if err := ev.groupUpTo(c.n); err != nil {
		return nil, err
	}
	head, err := canon.AppendEncode(append([]byte(nil), `{"canonical_value":`...), c.canonicalValue)
	if err != nil {
		return nil, err
	}
	head = append(head, `,"evidence_by_value":{`...)
	var pieces []piece
	for _, g := range ev.sortedGroups() {
		k := g.count(c.n)
		if k == 0 {
			continue
		}
		p := piece{keyEnc: g.keyEnc, idx: g.idx[:k:k]}
		if ev.odd != nil {
			for _, i := range p.idx {
				if r := ev.odd[int(i)]; r != nil {
					return nil, r.err
				}
			}
		}
		pieces = append(pieces, p)
	}
	tail := append([]byte(nil), `},"reason":"`...)
	tail = append(tail, reasonNames[c.reason]...)
	tail = append(tail, `","status":"AWAITING_RESOLUTION","total_evidence_count":`...)
	tail = strconv.AppendInt(tail, int64(c.n), 10)
	c.pieces, c.tail = pieces, append(tail, '}')
	return head, nil
}

// appendMetadata appends metadata_partial, or with withHash the exported
// metadata including state_hash.
func (s *State) appendMetadata(dst []byte, withHash bool) ([]byte, error) {
	var err error
	dst = append(dst, `{"current_epoch":`...)
	if dst, err = canon.AppendEncode(dst, s.currentEpoch); err != nil {
		return dst, fmt.Errorf("reducer: metadata.current_epoch cannot be canonicalised: %w", err)
	}
	dst = append(dst, `,"event_count":`...)
	dst = strconv.AppendInt(dst, s.eventCount, 10)
	dst = append(dst, `,"last_event_id":`...)
	if dst, err = canon.AppendEncode(dst, s.lastEventID); err != nil {
		return dst, fmt.Errorf("reducer: metadata.last_event_id cannot be canonicalised: %w", err)
	}
	dst = append(dst, `,"reducer":`...)
	if dst, err = canon.AppendEncode(dst, s.reducerMeta); err != nil {
		return dst, fmt.Errorf("reducer: metadata.reducer cannot be canonicalised: %w", err)
	}
	if withHash {
		dst = append(dst, `,"state_hash":"`...)
		dst = append(dst, s.hc.hash...)
		dst = append(dst, '"')
	}
	return append(dst, '}'), nil
}

// HashPreimage returns the canonical JSON whose SHA-256 is the state hash:
// the object {archived, canonical, contested, local, metadata_partial}
// that checkpoints embed as "state".
func (s *State) HashPreimage() ([]byte, error) {
	return s.appendDocument(nil, false)
}

// ExportJSON returns the reference's export_state_json(): the canonical
// JSON of the four namespaces and the metadata including state_hash,
// without a trailing newline (state/current_state.json adds one).
func (s *State) ExportJSON() ([]byte, error) {
	return s.appendDocument(nil, true)
}

func (s *State) appendDocument(dst []byte, export bool) ([]byte, error) {
	if _, err := s.StateHash(); err != nil {
		return nil, err
	}
	// StateHash left every live entry encoded.
	w := hashWriter{buf: dst}
	for ns := range numNamespaces {
		w.writeString(sectionHeads[ns])
		comma := false
		for _, ks := range s.sec[ns].order {
			if !ks.slot[ns].live {
				continue
			}
			if comma {
				w.writeByte(',')
			}
			comma = true
			w.write(ks.keyEnc)
			s.writeSlot(&w, ks, ns)
		}
	}
	if export {
		w.writeString(`},"metadata":`)
	} else {
		w.writeString(`},"metadata_partial":`)
	}
	out, err := s.appendMetadata(w.buf, export)
	if err != nil {
		return nil, err
	}
	return append(out, '}'), nil
}

// hashWriter buffers writes to a hash, or only collects them when h is nil.
type hashWriter struct {
	h         hash.Hash
	buf       []byte
	sinceMark int
}

const hashBuffer = 64 << 10

// directWrite is the size from which a write goes to the hash without
// passing through the buffer.
const directWrite = 4 << 10

func (w *hashWriter) write(p []byte) {
	w.sinceMark += len(p)
	if w.h != nil && len(p) >= directWrite {
		w.flush()
		w.h.Write(p)
		return
	}
	w.buf = append(w.buf, p...)
	if w.h != nil && len(w.buf) >= hashBuffer {
		w.flush()
	}
}

func (w *hashWriter) writeString(p string) {
	w.buf = append(w.buf, p...)
	w.sinceMark += len(p)
}

func (w *hashWriter) writeByte(c byte) {
	w.buf = append(w.buf, c)
	w.sinceMark++
}

func (w *hashWriter) flush() {
	if w.h != nil {
		w.h.Write(w.buf)
		w.buf = w.buf[:0]
	}
}

// midstate flushes and returns the hash's marshalled state.
func (w *hashWriter) midstate() []byte {
	w.flush()
	w.sinceMark = 0
	st, err := w.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("bug: reducer: marshal sha256 state: " + err.Error())
	}
	return st
}
