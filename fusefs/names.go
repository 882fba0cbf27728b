package fusefs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"unicode/utf8"
)

// maxName is the longest file name the mount produces: Linux's NAME_MAX
// (255 bytes) less room for the suffixes the mount adds to user files
// (".result", ".done", ".error").
const maxName = 240

// EscapeName turns any string (a subject, a predicate, an actor, an event
// id) into a usable file name, reversibly for names that fit:
//
//   - '%' becomes "%25", '/' "%2F", bytes below 0x20, 0x7F and bytes that
//     are not UTF-8 become "%XX" (upper-case hex);
//   - a leading '.' becomes "%2E", so that ".", ".." and hidden names
//     never appear;
//   - the empty string becomes "%" (a lone '%' never results otherwise);
//   - a result longer than 240 bytes is cut at 200 bytes (on an escape
//     boundary) and ends with "%~" and the first 32 hex digits of the
//     SHA-256 of the original string. Such a name is not reversible from
//     itself; state/state.json holds the original.
//
// Everything else, including spaces, ':' and non-ASCII letters, is kept.
func EscapeName(s string) string {
	if s == "" {
		return "%"
	}
	var b strings.Builder
	cuts := make([]int, 0, 8) // byte lengths of b at escape boundaries near the cut
	for i := 0; i < len(s); {
		if b.Len() <= 200 {
			cuts = append(cuts, b.Len())
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7F || c == '%' || c == '/' || (c == '.' && i == 0) {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	out := b.String()
	if len(out) <= maxName {
		return out
	}
	cut := 0
	for _, c := range cuts {
		if c <= 200 {
			cut = c
		}
	}
	sum := sha256.Sum256([]byte(s))
	return out[:cut] + "%~" + hex.EncodeToString(sum[:16])
}

// errNotEscaped is returned by UnescapeName for a name EscapeName cannot
// have produced.
var errNotEscaped = errors.New("fusefs: not an escaped name")

// UnescapeName reverses EscapeName. It fails for names EscapeName cannot
// have produced, including the hashed form of a long name.
func UnescapeName(name string) (string, error) {
	if name == "%" {
		return "", nil
	}
	if name == "" || len(name) > maxName || strings.Contains(name, "%~") {
		return "", errNotEscaped
	}
	var b []byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(name) {
			return "", errNotEscaped
		}
		v, err := hex.DecodeString(name[i+1 : i+3])
		if err != nil || strings.ToUpper(name[i+1:i+3]) != name[i+1:i+3] {
			return "", errNotEscaped
		}
		b = append(b, v[0])
		i += 2
	}
	s := string(b)
	if EscapeName(s) != name {
		return "", errNotEscaped
	}
	return s, nil
}
