package reducer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/big"
	"slices"
	"unicode/utf8"

	"github.com/backpack-field/backpack/internal/canon"
)

// The binary form is a compact, lossless encoding of a State for a cache
// file. Layout (all integers unsigned LEB128 varints unless noted):
//
//	magic "bpRS", version (1)
//	event_count, last_event_id V, current_epoch V, reducer block V
//	key count, then per key in canonical order:
//	  key S, flags (1 canonical, 2 local, 4 contested, 8 contested is
//	    literal, 16 archived)
//	  record count, records: either 0, the record's canonical JSON as S
//	    and the offset of its value's text, or 1 (a record that cannot
//	    be canonicalised) and actor S, namespace byte, confidence F,
//	    timestamp T, event_id V, value V
//	  canonical: value V, attested_by V, provenance V, attestation_event_id V
//	  local: value V, confidence F, provenance V, actor S, timestamp T,
//	    evidence_count
//	  contested: literal V, or reason byte, canonical_value V, shown count
//	  archived: count, entries: the four canonical fields, superseded_by V,
//	    retracted byte
//	CRC-32C of everything before, 4 bytes little-endian
//
// S is a length and UTF-8 bytes, F 8 bytes little-endian IEEE 754, T a
// byte 0 (null) or 1 and S, V a tagged value: 0 null, 1 false, 2 true,
// 3 int64 (zigzag varint), 4 larger int (S of its digits), 5 float (F),
// 6 string (S), 7 array (count, V...), 8 object (count, (S, V)... with keys
// strictly increasing). Every varint is minimal and every value canonical,
// so the encoding of a State is unique.

const (
	binaryMagic   = "bpRS"
	binaryVersion = 1

	flagCanonical = 1 << iota
	flagLocal
	flagContested
	flagLiteral
	flagArchived
	flagAll = flagCanonical | flagLocal | flagContested | flagLiteral | flagArchived
)

// Kinds of evidence records.
const (
	recordBytes = iota // the canonical encoding and where its value starts
	recordOdd          // a record that cannot be canonicalised, as values
)

const (
	tagNull = iota
	tagFalse
	tagTrue
	tagInt
	tagBigInt
	tagFloat
	tagString
	tagArray
	tagObject
)

// ErrCorrupt is returned (wrapped) by UnmarshalBinary for data that is not
// a State's binary form.
var ErrCorrupt = errors.New("reducer: corrupt binary state")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary returns the State's binary form (see AppendBinary).
func (s *State) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// AppendBinary appends a compact, versioned, checksummed encoding of the
// whole State, evidence included, that UnmarshalBinary turns back into an
// equivalent State much faster than Restore parses canonical JSON.
// Evidence records are copied as the canonical bytes the State keeps, so
// encoding is mostly copying. Hash caches are not part of it. A State
// stopped by an *ApplyError cannot be encoded.
func (s *State) AppendBinary(dst []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.init()
	start := len(dst)
	size := 64 + 16*len(s.keys)
	for _, c := range s.ar.chunks {
		size += len(c) + len(c)/16
	}
	e := binEncoder{b: slices.Grow(dst, size)}
	e.b = append(e.b, binaryMagic...)
	e.uvarint(binaryVersion)
	e.uvarint(uint64(s.eventCount))
	e.value(s.lastEventID)
	e.value(s.currentEpoch)
	e.value(s.reducerMeta)
	keys := make([]*keyState, 0, len(s.keys))
	for _, ks := range s.keys {
		keys = append(keys, ks)
	}
	slices.SortFunc(keys, cmpKey)
	e.uvarint(uint64(len(keys)))
	for _, ks := range keys {
		e.key(ks)
	}
	e.b = binary.LittleEndian.AppendUint32(e.b, crc32.Checksum(e.b[start:], castagnoli))
	return e.b, nil
}

type binEncoder struct{ b []byte }

func (e *binEncoder) uvarint(x uint64) { e.b = binary.AppendUvarint(e.b, x) }

func (e *binEncoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *binEncoder) float(f float64) {
	e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(f))
}

func (e *binEncoder) optStr(o optString) {
	if !o.valid {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.str(o.s)
}

func (e *binEncoder) value(v canon.Value) {
	switch v.Kind() {
	case canon.Null:
		e.b = append(e.b, tagNull)
	case canon.Bool:
		if v.Bool() {
			e.b = append(e.b, tagTrue)
		} else {
			e.b = append(e.b, tagFalse)
		}
	case canon.Int:
		if n, ok := v.Int64(); ok {
			e.b = append(e.b, tagInt)
			e.b = binary.AppendVarint(e.b, n)
		} else {
			e.b = append(e.b, tagBigInt)
			e.str(v.BigInt().String())
		}
	case canon.Float:
		e.b = append(e.b, tagFloat)
		e.float(v.Float())
	case canon.String:
		e.b = append(e.b, tagString)
		e.str(v.Str())
	case canon.Array:
		e.b = append(e.b, tagArray)
		e.uvarint(uint64(v.Len()))
		for i := range v.Len() {
			e.value(v.Index(i))
		}
	case canon.Object:
		e.b = append(e.b, tagObject)
		e.uvarint(uint64(v.Len()))
		for _, m := range v.Members() {
			e.str(m.Key)
			e.value(m.Value)
		}
	}
}

func (e *binEncoder) canonEntry(c *canonEntry) {
	e.value(c.value)
	e.value(c.attestedBy)
	e.value(c.provenance)
	e.value(c.attestationEventID)
}

func (e *binEncoder) key(ks *keyState) {
	e.str(ks.key)
	var flags byte
	if ks.slot[Canonical].live {
		flags |= flagCanonical
	}
	if ks.slot[Local].live {
		flags |= flagLocal
	}
	if ks.slot[Contested].live {
		flags |= flagContested
		if ks.cont.literal != nil {
			flags |= flagLiteral
		}
	}
	if ks.slot[Archived].live {
		flags |= flagArchived
	}
	e.b = append(e.b, flags)

	ev := &ks.ev
	e.uvarint(uint64(ev.len()))
	for i := range ev.len() {
		if r := ev.odd[i]; r != nil {
			e.b = append(e.b, recordOdd)
			e.str(r.actor)
			e.b = append(e.b, byte(r.ns))
			e.float(r.confidence)
			e.optStr(r.ts)
			e.value(r.eventID)
			e.value(r.value)
			continue
		}
		ref := ev.recs[i]
		e.b = append(e.b, recordBytes)
		b := ev.recordBytes(i)
		e.uvarint(uint64(len(b)))
		e.b = append(e.b, b...)
		e.uvarint(uint64(ref.vstart - ref.start))
	}
	if flags&flagCanonical != 0 {
		e.canonEntry(&ks.canon)
	}
	if flags&flagLocal != 0 {
		l := &ks.local
		e.value(l.value)
		e.float(l.confidence)
		e.value(l.provenance)
		e.str(l.actor)
		e.optStr(l.ts)
		e.uvarint(uint64(l.evidenceCount))
	}
	if flags&flagContested != 0 {
		if c := &ks.cont; c.literal != nil {
			e.value(*c.literal)
		} else {
			e.b = append(e.b, c.reason)
			e.value(c.canonicalValue)
			e.uvarint(uint64(c.n))
		}
	}
	if flags&flagArchived != 0 {
		e.uvarint(uint64(len(ks.arch)))
		for i := range ks.arch {
			a := &ks.arch[i]
			e.canonEntry(&a.canonEntry)
			e.value(a.supersededBy)
			if a.retracted {
				e.b = append(e.b, 1)
			} else {
				e.b = append(e.b, 0)
			}
		}
	}
}

// UnmarshalBinary replaces s with the State encoded in data by
// AppendBinary. It checks the magic, version and checksum, bounds every
// count by the input size, parses every evidence record, and rejects any
// non-canonical or inconsistent encoding with an error wrapping
// ErrCorrupt; it never panics. On error s is left unchanged.
//
// The checksum detects damage, not forgery: like any cache, the file is
// trusted to have been written by AppendBinary.
func (s *State) UnmarshalBinary(data []byte) error {
	ns, err := decodeBinary(data)
	if err != nil {
		return err
	}
	*s = *ns
	return nil
}

// decodeDepth bounds the nesting of decoded values.
const decodeDepth = maxDepth

type binDecoder struct {
	s   string // the input, as a string so that decoded strings share it
	pos int
	err error
}

func (d *binDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrCorrupt, d.pos, fmt.Sprintf(format, args...))
	}
	d.pos = len(d.s) // stop reading
}

func (d *binDecoder) byte() byte {
	if d.pos >= len(d.s) {
		d.fail("unexpected end of data")
		return 0
	}
	c := d.s[d.pos]
	d.pos++
	return c
}

func (d *binDecoder) uvarint() uint64 {
	var x uint64
	for shift := 0; ; shift += 7 {
		if d.pos >= len(d.s) {
			d.fail("unexpected end of data")
			return 0
		}
		c := d.s[d.pos]
		d.pos++
		if shift == 63 && c > 1 {
			d.fail("varint overflows 64 bits")
			return 0
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && shift > 0 {
				d.fail("non-minimal varint")
				return 0
			}
			return x
		}
	}
}

// count reads a count of items that take at least minSize bytes each.
func (d *binDecoder) count(minSize int) int {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.pos)/uint64(minSize) {
		d.fail("count %d exceeds the data", n)
		return 0
	}
	return int(n)
}

func (d *binDecoder) int64() int64 {
	x := d.uvarint()
	if x > math.MaxInt64 {
		d.fail("integer out of range")
		return 0
	}
	return int64(x)
}

func (d *binDecoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := d.s[d.pos : d.pos+n]
	d.pos += n
	if !utf8.ValidString(s) {
		d.fail("invalid UTF-8")
		return ""
	}
	return s
}

func (d *binDecoder) float() float64 {
	if len(d.s)-d.pos < 8 {
		d.fail("unexpected end of data")
		return 0
	}
	var b [8]byte
	copy(b[:], d.s[d.pos:])
	d.pos += 8
	return math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
}

func (d *binDecoder) optStr() optString {
	switch d.byte() {
	case 0:
		return optString{}
	case 1:
		return optString{s: d.str(), valid: true}
	}
	d.fail("bad optional string tag")
	return optString{}
}

func (d *binDecoder) value(depth int) canon.Value {
	switch tag := d.byte(); tag {
	case tagNull:
		return canon.NullValue()
	case tagFalse:
		return canon.BoolValue(false)
	case tagTrue:
		return canon.BoolValue(true)
	case tagInt:
		u := d.uvarint()
		return canon.IntValue(int64(u>>1) ^ -int64(u&1))
	case tagBigInt:
		digits := d.str()
		b, ok := new(big.Int).SetString(digits, 10)
		if !ok || b.IsInt64() || b.String() != digits {
			d.fail("bad big integer %q", digits)
			return canon.Value{}
		}
		return canon.BigIntValue(b)
	case tagFloat:
		return canon.FloatValue(d.float())
	case tagString:
		return canon.StringValue(d.str())
	case tagArray, tagObject:
		if depth >= decodeDepth {
			d.fail("nesting deeper than %d", decodeDepth)
			return canon.Value{}
		}
		n := d.count(1)
		if tag == tagArray {
			elems := make([]canon.Value, n)
			for i := range elems {
				elems[i] = d.value(depth + 1)
			}
			return canon.ArrayValue(elems...)
		}
		members := make([]canon.Member, n)
		for i := range members {
			members[i].Key = d.str()
			if i > 0 && members[i].Key <= members[i-1].Key && d.err == nil {
				d.fail("object keys out of order")
			}
			members[i].Value = d.value(depth + 1)
		}
		return canon.ObjectValue(members...)
	}
	d.fail("bad value tag")
	return canon.Value{}
}

func (d *binDecoder) canonEntry() canonEntry {
	return canonEntry{value: d.value(0), attestedBy: d.value(0), provenance: d.value(0), attestationEventID: d.value(0)}
}

func decodeBinary(data []byte) (*State, error) {
	if len(data) < len(binaryMagic)+1+4 || string(data[:len(binaryMagic)]) != binaryMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	d := &binDecoder{s: string(body), pos: len(binaryMagic)}
	if v := d.uvarint(); v != binaryVersion {
		if d.err != nil {
			return nil, d.err
		}
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, v, binaryVersion)
	}
	s := New()
	s.eventCount = d.int64()
	s.lastEventID = d.value(0)
	s.currentEpoch = d.value(0)
	s.reducerMeta = d.value(0)
	nkeys := d.count(3)
	prev := ""
	for i := 0; i < nkeys && d.err == nil; i++ {
		key := d.str()
		if i > 0 && key <= prev && d.err == nil {
			d.fail("keys out of order")
		}
		prev = key
		s.decodeKey(d, key)
	}
	if d.err == nil && d.pos != len(d.s) {
		d.fail("%d bytes of trailing data", len(d.s)-d.pos)
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}

func (s *State) decodeKey(d *binDecoder, key string) {
	flags := d.byte()
	if flags&^flagAll != 0 || (flags&flagLiteral != 0 && flags&flagContested == 0) {
		d.fail("bad key flags %#x", flags)
		return
	}
	ks := s.newKey(key)
	nrec := d.count(3)
	if nrec > math.MaxInt32 {
		d.fail("too many records")
		return
	}
	for i := range nrec {
		switch d.byte() {
		case recordBytes:
			b := d.str()
			vstart := d.uvarint()
			if d.err != nil {
				return
			}
			if err := checkRecord(b, vstart); err != nil {
				d.fail("evidence record %d of %q: %v", i, key, err)
				return
			}
			ks.ev.addEncoded(b, int(vstart))
		case recordOdd:
			var r record
			r.actor = d.str()
			ns := d.byte()
			if ns >= byte(numNamespaces) {
				d.fail("bad namespace")
				return
			}
			r.ns = Namespace(ns)
			r.confidence = d.float()
			r.ts = d.optStr()
			r.eventID = d.value(0)
			r.value = d.value(0)
			if d.err != nil {
				return
			}
			ks.ev.add(&r)
			if ks.ev.odd[i] == nil {
				d.fail("evidence record %d of %q is not odd", i, key)
				return
			}
		default:
			d.fail("bad record kind")
			return
		}
	}
	if flags&flagCanonical != 0 {
		ks.canon = d.canonEntry()
		s.setLive(ks, Canonical)
	}
	if flags&flagLocal != 0 {
		l := &ks.local
		l.value = d.value(0)
		l.confidence = d.float()
		l.provenance = d.value(0)
		l.actor = d.str()
		l.ts = d.optStr()
		l.evidenceCount = d.int64()
		s.setLive(ks, Local)
	}
	if flags&flagContested != 0 {
		if flags&flagLiteral != 0 {
			lit := d.value(0)
			ks.cont = contestEntry{literal: &lit}
		} else {
			c := contestEntry{reason: d.byte(), canonicalValue: d.value(0)}
			n := d.uvarint()
			if d.err != nil {
				return
			}
			if c.reason >= byte(len(reasonNames)) || n < 1 || n > uint64(ks.ev.len()) {
				d.fail("bad contested entry for %q", key)
				return
			}
			c.n = int(n)
			if err := ks.ev.groupUpTo(c.n); err != nil {
				d.fail("contested evidence of %q cannot be canonicalised", key)
				return
			}
			ks.cont = c
		}
		s.setLive(ks, Contested)
	}
	if flags&flagArchived != 0 {
		n := d.count(6)
		ks.arch = make([]archEntry, 0, n)
		for range n {
			a := archEntry{canonEntry: d.canonEntry(), supersededBy: d.value(0)}
			switch d.byte() {
			case 0:
			case 1:
				a.retracted = true
			default:
				d.fail("bad retracted flag")
			}
			ks.arch = append(ks.arch, a)
		}
		s.setLive(ks, Archived)
	}
}

// checkRecord checks that b parses as JSON (so that the State can turn it
// back into a value) and that vstart is where a record's value text can
// start. It does not check the record's shape or that it is canonical:
// like any cache file, the data is trusted to come from AppendBinary, and
// the checksum is what detects damage.
func checkRecord(b string, vstart uint64) error {
	if !recordLimits.Valid([]byte(b)) {
		return errors.New("not JSON")
	}
	const valueKey = `,"value":`
	if len(b) > maxRecord || vstart < uint64(len(valueKey)) || vstart >= uint64(len(b)) || b[vstart-uint64(len(valueKey)):vstart] != valueKey {
		return errors.New("bad value offset")
	}
	return nil
}
