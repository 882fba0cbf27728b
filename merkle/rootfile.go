package merkle

import (
	"fmt"
	"strings"
	"unicode"
)

// EncodeRootFile returns merkle_root.txt's bytes: the root in lowercase hex
// and a line feed.
func EncodeRootFile(h Hash) []byte {
	return []byte(h.String() + "\n")
}

// maxRootFile bounds ParseRootFile: 64 digits and some whitespace.
const maxRootFile = 4 << 10

// ParseRootFile parses merkle_root.txt: surrounding whitespace is stripped
// (as the reference's str.strip() does) and the rest must be 64 lowercase
// hex digits.
func ParseRootFile(data []byte) (Hash, error) {
	if len(data) > maxRootFile {
		return Hash{}, fmt.Errorf("%w: merkle_root.txt is %d bytes", ErrBadHash, len(data))
	}
	return ParseHash(StripSpace(string(data)))
}

// StripSpace removes leading and trailing whitespace as Python's
// str.strip() does: Go's unicode.IsSpace plus the separators U+001C to
// U+001F, which Python also counts as whitespace.
func StripSpace(s string) string {
	return strings.TrimFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
	})
}
