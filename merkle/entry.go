package merkle

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/backpack-field/backpack/internal/canon"
)

// Entry is one file of a manifest: {"path", "sha256", "size"}.
//
// SHA256 is kept as the text stored in the manifest, not as a Hash: the
// Merkle leaf is the canonical JSON of the entry as stored, so a malformed
// or uppercase digest must be hashed exactly as written (SPEC.md §5.3,
// vector merkle_root_01). Entries that Build produces always hold
// lowercase hex.
type Entry struct {
	Path   string // root-relative, "/"-separated
	SHA256 string // as stored; lowercase hex for files Build hashed
	Size   int64  // byte length

	// Extra holds members other than path, sha256 and size, in canonical
	// key order. The reference's leaf is canon(entry), so they are part of
	// the leaf and change the root; ParseManifest keeps them, and Verify
	// reports them because nothing checks them against the disk. Builders
	// leave Extra nil. A member named path, sha256 or size is an error.
	Extra []canon.Member
}

// Value returns e as a canonical JSON object.
func (e Entry) Value() (canon.Value, error) {
	members := make([]canon.Member, 0, 3+len(e.Extra))
	for _, m := range e.Extra {
		switch m.Key {
		case "path", "sha256", "size":
			return canon.Value{}, fmt.Errorf("merkle: entry %q: extra member %q duplicates a field", e.Path, m.Key)
		}
		members = append(members, m)
	}
	members = append(members,
		canon.Member{Key: "path", Value: canon.StringValue(e.Path)},
		canon.Member{Key: "sha256", Value: canon.StringValue(e.SHA256)},
		canon.Member{Key: "size", Value: canon.IntValue(e.Size)},
	)
	return canon.ObjectValue(members...), nil
}

// Leaf returns the canonical JSON bytes of e: the Merkle leaf's preimage.
func (e Entry) Leaf() ([]byte, error) { return e.AppendLeaf(nil) }

// AppendLeaf appends the canonical JSON bytes of e to dst.
func (e Entry) AppendLeaf(dst []byte) ([]byte, error) {
	v, err := e.Value()
	if err != nil {
		return dst, err
	}
	out, err := canon.AppendEncode(dst, v)
	if err != nil {
		return dst, fmt.Errorf("merkle: entry %q: %w", e.Path, err)
	}
	return out, nil
}

// ErrUnsorted is returned (wrapped, naming the entries) when entries are
// not in strictly increasing path order: out of order or duplicated.
// Manifests list each path once, sorted by byte (code point) order; RootOf
// refuses other input instead of sorting it quietly, so that a root always
// describes exactly the list it was given. Builders call SortEntries.
var ErrUnsorted = errors.New("merkle: entries not sorted by path or duplicated")

// SortEntries sorts entries by path in byte order, the manifest order
// (SPEC.md §5.1: "a-b/x" < "a.b/x" < "a/x" < "a0"). The sort is stable, so
// entries with equal paths keep their relative order, as in the
// reference's Python sort.
func SortEntries(entries []Entry) {
	slices.SortStableFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
}

// CheckOrder returns an error wrapping ErrUnsorted for the first entry
// whose path is not strictly greater than its predecessor's.
func CheckOrder(entries []Entry) error {
	for i := 1; i < len(entries); i++ {
		switch c := strings.Compare(entries[i-1].Path, entries[i].Path); {
		case c == 0:
			return fmt.Errorf("%w: entry %d duplicates path %q", ErrUnsorted, i, entries[i].Path)
		case c > 0:
			return fmt.Errorf("%w: entry %d %q sorts before entry %d %q", ErrUnsorted, i, entries[i].Path, i-1, entries[i-1].Path)
		}
	}
	return nil
}

// RootOf returns the Merkle root of entries, which must be sorted by path
// with no duplicates (else the error wraps ErrUnsorted).
func RootOf(entries []Entry) (Hash, error) {
	if err := CheckOrder(entries); err != nil {
		return Hash{}, err
	}
	return rootUnchecked(entries)
}

// rootUnchecked returns the root of entries in the order given.
func rootUnchecked(entries []Entry) (Hash, error) {
	var b Builder
	var buf []byte
	for _, e := range entries {
		var err error
		if buf, err = e.AppendLeaf(buf[:0]); err != nil {
			return Hash{}, err
		}
		b.Add(buf)
	}
	return b.Root(), nil
}

// ReferenceRoot returns the root the reference computes from a stored
// manifest's entries (SPEC.md §5.3, compliance test_10): a stable sort by
// path, duplicates kept, then the root. Use it to compare with
// merkle_root.txt; use RootOf to compute a root you are going to write.
func ReferenceRoot(entries []Entry) (Hash, error) {
	sorted := slices.Clone(entries)
	SortEntries(sorted)
	return rootUnchecked(sorted)
}

// PathError explains why a manifest path is unsafe or not in canonical
// form.
type PathError struct {
	Path   string
	Reason string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("merkle: unsafe path %q: %s", e.Path, e.Reason)
}

// CheckPath reports whether p is a safe manifest path in the form the
// reference writes: non-empty, valid UTF-8, relative ("/" separators, no
// leading "/"), with no empty, "." or ".." components and no NUL byte.
// The reference's compliance test_08 refuses absolute paths and ".."
// components; the other rules are stricter than it, because such a path
// cannot come from a directory walk and would never match one. Whether a
// path escapes the root through a symlink is decided on disk (Verify).
func CheckPath(p string) error {
	bad := func(reason string) error { return &PathError{Path: p, Reason: reason} }
	switch {
	case p == "":
		return bad("empty")
	case !utf8.ValidString(p):
		return bad("not valid UTF-8")
	case strings.IndexByte(p, 0) >= 0:
		return bad("contains a NUL byte")
	case p[0] == '/':
		return bad("absolute")
	}
	for c := range strings.SplitSeq(p, "/") {
		switch c {
		case "..":
			return bad(`has a ".." component`)
		case ".":
			return bad(`has a "." component`)
		case "":
			return bad("has an empty component")
		}
	}
	return nil
}
