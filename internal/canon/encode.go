package canon

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Errors returned by Encode. The reference raises on the same inputs
// (ValueError for non-finite floats, UnicodeEncodeError for lone
// surrogates), so a value that cannot be encoded cannot be hashed or signed.
var (
	ErrNonFinite  = errors.New("canon: non-finite float cannot be canonicalised")
	ErrInvalidStr = errors.New("canon: string is not valid UTF-8")
)

func sortMembersLarge(m []Member) {
	slices.SortStableFunc(m, func(a, b Member) int { return cmp.Compare(a.Key, b.Key) })
}

// Encode returns the canonical bytes of v.
func Encode(v Value) ([]byte, error) {
	return AppendEncode(nil, v)
}

// MustEncode is Encode for values known to be encodable (built by the
// caller from finite floats and valid strings). It panics otherwise.
func MustEncode(v Value) []byte {
	b, err := Encode(v)
	if err != nil {
		panic("bug: " + err.Error())
	}
	return b
}

// AppendEncode appends the canonical bytes of v to dst.
func AppendEncode(dst []byte, v Value) ([]byte, error) {
	switch v.k {
	case Null:
		return append(dst, "null"...), nil
	case Bool:
		if v.n != 0 {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case Int:
		if v.s != "" {
			return append(dst, v.s...), nil
		}
		return strconv.AppendInt(dst, v.n, 10), nil
	case Float:
		return AppendFloat(dst, v.Float())
	case String:
		return AppendString(dst, v.s)
	case Array:
		dst = append(dst, '[')
		for i, m := range v.c {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendEncode(dst, m.Value); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case Object:
		dst = append(dst, '{')
		for i, m := range v.sorted() {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendString(dst, m.Key); err != nil {
				return dst, err
			}
			dst = append(dst, ':')
			if dst, err = AppendEncode(dst, m.Value); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	}
	panic("bug: canon: unknown kind")
}

// AppendFloat appends Python's repr of f: the shortest round-trip digits,
// fixed notation for decimal exponents in [-4, 16) with ".0" added to
// integral values, otherwise scientific with a signed exponent of at least
// two digits. -0.0 keeps its sign.
func AppendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, ErrNonFinite
	}
	if f == 0 {
		if math.Signbit(f) {
			return append(dst, "-0.0"...), nil
		}
		return append(dst, "0.0"...), nil
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	// e looks like -d.ddde±XX; find the exponent.
	i := len(e) - 1
	for e[i] != 'e' {
		i--
	}
	exp, _ := strconv.Atoi(string(e[i+1:]))
	if exp < -4 || exp >= 16 {
		return append(dst, e...), nil
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
	for _, c := range dst[start:] {
		if c == '.' {
			return dst, nil
		}
	}
	return append(dst, ".0"...), nil
}

// AppendString appends s as a canonical JSON string: only '"', '\\' and the
// C0 controls are escaped (\b \t \n \f \r, the rest as lowercase \u00xx);
// every other code point is written raw.
func AppendString(dst []byte, s string) ([]byte, error) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return dst, ErrInvalidStr
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}

// Text returns the canonical text of v, or an error.
func Text(v Value) (string, error) {
	b, err := Encode(v)
	return string(b), err
}
