package reducer

import (
	"math"

	"github.com/backpack-field/backpack/internal/canon"
)

// floatCache remembers the canonical text of recently encoded floats.
// Confidences take few distinct values, and formatting a float (two
// strconv calls in canon.AppendFloat) is a large part of encoding an
// evidence record.
type floatCache struct {
	slot [64]struct {
		bits uint64
		n    uint8 // text length; 0 for an empty slot
		text [24]byte
	}
}

// appendFloat is canon.AppendFloat through the cache (if c is not nil).
func (c *floatCache) appendFloat(dst []byte, f float64) ([]byte, error) {
	if c == nil {
		return canon.AppendFloat(dst, f)
	}
	bits := math.Float64bits(f)
	e := &c.slot[(bits*0x9e3779b97f4a7c15)>>58]
	if e.n != 0 && e.bits == bits {
		return append(dst, e.text[:e.n]...), nil
	}
	start := len(dst)
	dst, err := canon.AppendFloat(dst, f)
	if err != nil {
		return dst, err
	}
	if t := dst[start:]; len(t) <= len(e.text) {
		e.bits, e.n = bits, uint8(copy(e.text[:], t))
	}
	return dst, nil
}
