package canon

import (
	"math"
	"math/big"
)

// Equal reports whether a and b are the same JSON value: same kinds and
// equal canonical text (a NaN equals a NaN with the same bits).
func Equal(a, b Value) bool {
	if a.ordered() || b.ordered() {
		a.c, a.n = a.sorted(), 0
		b.c, b.n = b.sorted(), 0
	}
	if a.k != b.k || a.n != b.n || a.s != b.s || len(a.c) != len(b.c) {
		return false
	}
	for i := range a.c {
		if a.c[i].Key != b.c[i].Key || !Equal(a.c[i].Value, b.c[i].Value) {
			return false
		}
	}
	return true
}

// PyEqual reports whether a == b in Python after json.loads: numbers
// compare by exact value across bool, int and float (1 == 1.0 == true),
// NaN equals nothing, strings by code points, arrays element-wise, objects
// by key set and values, and values of different kinds are unequal.
func PyEqual(a, b Value) bool {
	if a.isNumber() && b.isNumber() {
		return numCmp(a, b) == 0
	}
	if a.k != b.k {
		return false
	}
	switch a.k {
	case Null:
		return true
	case String:
		return a.s == b.s
	case Array, Object:
		a.c, b.c = a.sorted(), b.sorted()
		if len(a.c) != len(b.c) {
			return false
		}
		for i := range a.c {
			if a.c[i].Key != b.c[i].Key || !PyEqual(a.c[i].Value, b.c[i].Value) {
				return false
			}
		}
		return true
	}
	return false
}

func (v Value) isNumber() bool { return v.k == Bool || v.k == Int || v.k == Float }

// numCmp compares two numbers exactly; it returns 2 when either is NaN.
func numCmp(a, b Value) int {
	if a.k != Float && b.k != Float && a.s == "" && b.s == "" {
		switch {
		case a.n < b.n:
			return -1
		case a.n > b.n:
			return 1
		}
		return 0
	}
	af, ok1 := a.bigFloat()
	bf, ok2 := b.bigFloat()
	if !ok1 || !ok2 {
		return 2
	}
	return af.Cmp(bf)
}

// bigFloat returns the exact value of a number, false for NaN.
func (v Value) bigFloat() (*big.Float, bool) {
	switch v.k {
	case Float:
		f := v.Float()
		if math.IsNaN(f) {
			return nil, false
		}
		return new(big.Float).SetFloat64(f), true
	case Int:
		return new(big.Float).SetInt(v.BigInt()), true
	default: // Bool
		return new(big.Float).SetInt64(v.n), true
	}
}
