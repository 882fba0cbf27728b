package merkle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Hash is a SHA-256 digest: a file's content address, a Merkle leaf or
// node, or a Merkle root. Its text form is 64 lowercase hex digits.
type Hash [32]byte

// ErrBadHash is returned (wrapped) by ParseHash for text that is not 64
// lowercase hex digits.
var ErrBadHash = errors.New("merkle: malformed hash")

// String returns h as 64 lowercase hex digits.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero bytes (no hash).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText implements encoding.TextMarshaler (lowercase hex).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseHash's rules.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash parses 64 lowercase hex digits. Uppercase is refused: the
// reference compares hashes as strings, so "ABC…" does not equal "abc…"
// there, and accepting it here would hide a mismatch.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%w: %d characters, want 64", ErrBadHash, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return h, fmt.Errorf("%w: character %q at %d is not lowercase hex", ErrBadHash, c, i)
		}
	}
	hex.Decode(h[:], []byte(s))
	return h, nil
}

// Sum returns the SHA-256 of b.
func Sum(b []byte) Hash { return sha256.Sum256(b) }

// EmptyRoot is the root of a tree with no leaves: SHA-256 of no bytes.
var EmptyRoot = Sum(nil)

// Root returns the Merkle root of leaves, each the canonical bytes of one
// manifest entry, in the order given (SPEC.md §5.3): every leaf is hashed,
// each level pairs neighbours as SHA-256(left || right) over the raw 32-byte
// digests, an odd level pairs its last node with itself, and an empty list
// gives EmptyRoot. There is no domain separation: the root of one leaf is
// that leaf's hash.
func Root(leaves [][]byte) Hash {
	var b Builder
	for _, l := range leaves {
		b.Add(l)
	}
	return b.Root()
}

// Builder computes a Merkle root incrementally, one leaf at a time, in
// O(log n) memory. The zero Builder is empty. A Builder is not safe for
// concurrent use.
type Builder struct {
	// pending[i] is the unpaired node at level i (level 0 = leaf hashes),
	// valid when bit i of full is set. Every node at level i before it
	// has already been paired and folded into a higher level.
	pending [64]Hash
	full    uint64
	n       uint64
}

// Add appends a leaf: the canonical bytes of one entry.
func (b *Builder) Add(leaf []byte) { b.AddLeafHash(Sum(leaf)) }

// AddLeafHash appends a leaf whose SHA-256 the caller already computed.
func (b *Builder) AddLeafHash(h Hash) {
	b.n++
	i := 0
	for b.full&(1<<i) != 0 {
		h = node(&b.pending[i], &h)
		b.full &^= 1 << i
		i++
	}
	b.pending[i] = h
	b.full |= 1 << i
}

// Len returns the number of leaves added.
func (b *Builder) Len() int { return int(b.n) }

// Root returns the root of the leaves added so far. The Builder is not
// changed, so more leaves may follow.
func (b *Builder) Root() Hash {
	if b.n == 0 {
		return EmptyRoot
	}
	// Walk up from the leaves. carry is the last node of level i produced
	// from the levels below, if any. A level's node count is odd exactly
	// when its last node has no partner; it is the root level when no
	// higher level holds anything (then no pairs were ever formed there).
	var carry Hash
	haveCarry := false
	for i := 0; i < len(b.pending); i++ {
		higher := b.full>>(i+1) != 0
		switch p := b.full&(1<<i) != 0; {
		case p && haveCarry:
			carry = node(&b.pending[i], &carry)
		case p && !haveCarry:
			if !higher {
				return b.pending[i]
			}
			carry = node(&b.pending[i], &b.pending[i])
			haveCarry = true
		case haveCarry:
			if !higher {
				return carry
			}
			carry = node(&carry, &carry)
		}
	}
	panic("bug: merkle: builder has no root")
}

// node returns SHA-256(left || right).
func node(left, right *Hash) Hash {
	var buf [64]byte
	copy(buf[:32], left[:])
	copy(buf[32:], right[:])
	return sha256.Sum256(buf[:])
}
