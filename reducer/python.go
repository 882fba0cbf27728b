package reducer

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/backpack-field/backpack/internal/canon"
)

// This file holds the few pieces of Python semantics the reference reducer
// relies on: truthiness, str(), float() and ==, for values produced by
// json.loads.

// truthy reports Python's truth value of a parsed JSON value: null, false,
// 0, 0.0, -0.0, "", [] and {} are false; everything else (NaN included) is
// true.
func truthy(v canon.Value) bool {
	switch v.Kind() {
	case canon.Null:
		return false
	case canon.Bool:
		return v.Bool()
	case canon.Int:
		n, ok := v.Int64()
		return !ok || n != 0 // ints outside int64 are never zero
	case canon.Float:
		return v.Float() != 0 // NaN != 0
	case canon.String:
		return v.Str() != ""
	default:
		return v.Len() > 0
	}
}

// or returns a if it is truthy, else b: Python's "a or b".
func or(a, b canon.Value) canon.Value {
	if truthy(a) {
		return a
	}
	return b
}

// pystr returns Python's str(v) of a parsed JSON value.
func pystr(v canon.Value) string {
	if v.Kind() == canon.String {
		return v.Str()
	}
	return string(appendRepr(nil, v))
}

// appendRepr appends Python's repr(v). For everything but strings this is
// also str(v). Objects are written in canonical key order, not in the
// order of the JSON text as Python would (see the package doc).
func appendRepr(dst []byte, v canon.Value) []byte {
	switch v.Kind() {
	case canon.Null:
		return append(dst, "None"...)
	case canon.Bool:
		if v.Bool() {
			return append(dst, "True"...)
		}
		return append(dst, "False"...)
	case canon.Int:
		b, _ := canon.AppendEncode(dst, v) // ints always encode
		return b
	case canon.Float:
		return appendPyFloat(dst, v.Float())
	case canon.String:
		return appendStrRepr(dst, v.Str())
	case canon.Array:
		dst = append(dst, '[')
		for i := range v.Len() {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendRepr(dst, v.Index(i))
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for i, m := range v.Members() {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendStrRepr(dst, m.Key)
			dst = append(dst, ": "...)
			dst = appendRepr(dst, m.Value)
		}
		return append(dst, '}')
	}
}

// appendPyFloat appends Python's repr of a float: the canonical float text
// for finite values, "inf", "-inf" and "nan" otherwise.
func appendPyFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "nan"...)
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	}
	b, _ := canon.AppendFloat(dst, f)
	return b
}

// appendStrRepr appends Python's repr of a string: single quotes unless the
// string contains a single quote and no double quote; backslash escapes for
// the quote, backslash, \t, \n, \r; \xhh for other C0 controls and DEL;
// non-printable non-ASCII code points as \xhh, \uhhhh or \Uhhhhhhhh.
// Printability follows Go's unicode tables, which define it as CPython
// does (categories L, M, N, P, S and the ASCII space) but may be of a
// different Unicode version.
func appendStrRepr(dst []byte, s string) []byte {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	const hex = "0123456789abcdef"
	dst = append(dst, quote)
	for _, r := range s {
		switch {
		case r == rune(quote) || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r < 0x20 || r == 0x7f:
			dst = append(dst, '\\', 'x', hex[r>>4], hex[r&0xf])
		case r < 0x7f:
			dst = append(dst, byte(r))
		case unicode.IsPrint(r):
			dst = utf8.AppendRune(dst, r)
		case r <= 0xff:
			dst = append(dst, '\\', 'x', hex[r>>4], hex[r&0xf])
		case r <= 0xffff:
			dst = append(dst, '\\', 'u')
			for sh := 12; sh >= 0; sh -= 4 {
				dst = append(dst, hex[(r>>sh)&0xf])
			}
		default:
			dst = append(dst, '\\', 'U')
			for sh := 28; sh >= 0; sh -= 4 {
				dst = append(dst, hex[(r>>sh)&0xf])
			}
		}
	}
	return append(dst, quote)
}

// isPySpace reports whether Python's str.isspace is true for r.
func isPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ',
		0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// pyStrip returns s without leading and trailing Python whitespace, as
// str.strip() does.
func pyStrip(s string) string {
	return strings.TrimFunc(s, isPySpace)
}

// safeFloat is the reference's _safe_float(v, def): null gives def, a bool
// 1.0 or 0.0, a number its float value, a string Python's float() parse,
// anything unparsable def, and a NaN result def. ok is false where the
// reference raises: an integer too large for a float (OverflowError).
func safeFloat(v canon.Value, def float64) (f float64, ok bool) {
	switch v.Kind() {
	case canon.Bool:
		if v.Bool() {
			return 1, true
		}
		return 0, true
	case canon.Int:
		if n, small := v.Int64(); small {
			return float64(n), true // rounds to nearest even, as Python does
		}
		f, _ = new(big.Float).SetInt(v.BigInt()).Float64()
		if math.IsInf(f, 0) {
			return 0, false
		}
		return f, true
	case canon.Float:
		f = v.Float()
	case canon.String:
		var parsed bool
		if f, parsed = parsePyFloat(v.Str()); !parsed {
			return def, true
		}
	default: // null, arrays, objects
		return def, true
	}
	if math.IsNaN(f) {
		return def, true
	}
	return f, true
}

// parsePyFloat parses s as CPython 3.11's float(str) does:
//
//  1. every non-ASCII code point becomes ' ' if it is whitespace, its
//     ASCII digit if it is a decimal digit (category Nd), else the string
//     is invalid;
//  2. '_' is allowed only between two ASCII digits and is removed;
//  3. ASCII whitespace (" \t\n\v\f\r", but not U+001C..U+001F) is
//     stripped from both ends;
//  4. what remains must be [+-] followed by "inf", "infinity" or "nan" in
//     any case, or a decimal number (digits with an optional '.', at least
//     one digit, an optional exponent). Overflow gives ±Inf, as in Python.
func parsePyFloat(s string) (float64, bool) {
	var arr [64]byte
	b := arr[:0]
	underscore := false
	for _, r := range s {
		switch {
		case r < 0x7f:
			b = append(b, byte(r))
			underscore = underscore || r == '_'
		case isPySpace(r):
			b = append(b, ' ')
		default:
			d, ok := decimalDigit(r)
			if !ok {
				return 0, false
			}
			b = append(b, '0'+byte(d))
		}
	}
	if underscore {
		out := b[:0] // compacting in place: writes never overtake reads
		prev := byte(0)
		for _, c := range b {
			if c == '_' {
				if !isDigit(prev) {
					return 0, false
				}
			} else {
				if prev == '_' && !isDigit(c) {
					return 0, false
				}
				out = append(out, c)
			}
			prev = c
		}
		if prev == '_' {
			return 0, false
		}
		b = out
	}
	for len(b) > 0 && isASCIISpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isASCIISpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	if !validPyFloat(b) {
		return 0, false
	}
	body := b
	neg := false
	if body[0] == '+' || body[0] == '-' {
		neg = body[0] == '-'
		body = body[1:]
	}
	switch {
	case asciiEqualFold(body, "inf"), asciiEqualFold(body, "infinity"):
		if neg {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case asciiEqualFold(body, "nan"):
		return math.NaN(), true
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && err.(*strconv.NumError).Err != strconv.ErrRange {
		return 0, false // unreachable after validPyFloat
	}
	return f, true
}

// validPyFloat checks the grammar of step 4 of parsePyFloat.
func validPyFloat(b []byte) bool {
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		b = b[1:]
	}
	if asciiEqualFold(b, "inf") || asciiEqualFold(b, "infinity") || asciiEqualFold(b, "nan") {
		return true
	}
	i, digits := 0, 0
	for i < len(b) && isDigit(b[i]) {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && isDigit(b[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isASCIISpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// decimalDigit returns the value of a Unicode decimal digit (category Nd).
// Unicode encodes every decimal digit set as a run of ten code points from
// zero to nine, and runs in Go's table start at a zero, so the value is
// the offset from the start of the table range modulo ten.
func decimalDigit(r rune) (int, bool) {
	for _, rg := range unicode.Nd.R16 {
		if r < rune(rg.Lo) {
			return 0, false
		}
		if r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10, true
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r < rune(rg.Lo) {
			return 0, false
		}
		if r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10, true
		}
	}
	return 0, false
}

// pyEqual reports whether a == b in Python for values parsed by
// json.loads. It differs from canon.PyEqual in one place: json.loads
// returns one shared NaN object, and Python compares container elements
// by identity first, so [NaN] == [NaN] while NaN != NaN.
func pyEqual(a, b canon.Value) bool { return pyEq(a, b, false) }

func pyEq(a, b canon.Value, nested bool) bool {
	ak, bk := a.Kind(), b.Kind()
	switch {
	case ak == canon.String && bk == canon.String:
		return a.Str() == b.Str()
	case ak == canon.Array && bk == canon.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !pyEq(a.Index(i), b.Index(i), true) {
				return false
			}
		}
		return true
	case ak == canon.Object && bk == canon.Object:
		am, bm := a.Members(), b.Members()
		if len(am) != len(bm) {
			return false
		}
		for i := range am {
			if am[i].Key != bm[i].Key || !pyEq(am[i].Value, bm[i].Value, true) {
				return false
			}
		}
		return true
	case ak == canon.Float && bk == canon.Float:
		x, y := a.Float(), b.Float()
		return x == y || (nested && math.IsNaN(x) && math.IsNaN(y))
	}
	return canon.PyEqual(a, b)
}
