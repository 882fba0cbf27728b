package store

import (
	"encoding/binary"
	"errors"

	bplog "github.com/backpack-field/backpack/log"
)

// The log index travels in the state cache so that an import into a large
// backpack does not re-read the whole log. Encoding: "BPIDX1", a uvarint
// count, then per event: uvarint-length-prefixed id, prev, timestamp and
// actor, a byte (1 when prev_event_hash is a string), and the 32-byte
// content hash (SHA-256 of the canonical line).

const indexMagic = "BPIDX1"

func (x *logIndex) encode() []byte {
	out := make([]byte, 0, len(indexMagic)+len(x.items)*130)
	out = append(out, indexMagic...)
	out = binary.AppendUvarint(out, uint64(len(x.items)))
	str := func(s string) {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	for i, it := range x.items {
		str(it.ID)
		str(it.Prev)
		str(it.Timestamp)
		str(x.actors[i])
		if it.HasPrev {
			out = append(out, 1)
		} else {
			out = append(out, 0)
		}
		out = append(out, x.hashes[i][:]...)
	}
	return out
}

var errBadIndex = errors.New("store: state cache: bad log index")

// decodeIndex reads what encode wrote; every length is checked against
// the bytes left.
func decodeIndex(b []byte) (*logIndex, error) {
	if len(b) < len(indexMagic) || string(b[:len(indexMagic)]) != indexMagic {
		return nil, errBadIndex
	}
	b = b[len(indexMagic):]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errBadIndex
	}
	b = b[k:]
	size := int(min(n, uint64(len(b))/34))
	x := &logIndex{items: make([]bplog.OrderItem, 0, size), actors: make([]string, 0, size), hashes: make([][32]byte, 0, size)}
	// Every string is a slice of one copy of the section: one allocation
	// instead of four an event. Actors repeat: they are shared.
	all := string(b)
	pos := 0
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return "", false
		}
		s := all[pos+k : pos+k+int(l)]
		b = b[k+int(l):]
		pos += k + int(l)
		return s, true
	}
	actors := map[string]string{}
	for range n {
		var it bplog.OrderItem
		var ok [4]bool
		var actor string
		it.ID, ok[0] = str()
		it.Prev, ok[1] = str()
		it.Timestamp, ok[2] = str()
		actor, ok[3] = str()
		if !ok[0] || !ok[1] || !ok[2] || !ok[3] || len(b) < 33 {
			return nil, errBadIndex
		}
		it.HasPrev = b[0] == 1
		var h [32]byte
		copy(h[:], b[1:33])
		b = b[33:]
		pos += 33
		if a, ok := actors[actor]; ok {
			actor = a
		} else if len(actors) < 1<<16 {
			actors[actor] = actor
		}
		x.appendUnique(it, actor, h)
	}
	if len(b) != 0 {
		return nil, errBadIndex
	}
	x.buildMaps()
	if len(x.byID) != len(x.items) {
		return nil, errBadIndex // an id twice: not an index encode wrote
	}
	return x, nil
}
