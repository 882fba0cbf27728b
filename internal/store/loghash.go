package store

import (
	"crypto/sha256"
	"encoding"
	"hash"
	"slices"
)

// logHasher is the running SHA-256 of events.ndjson. It also keeps the
// digest's state at every markEvery bytes, so that after a merge that
// keeps the log's first bytes the new log's hash resumes from the last
// mark before the first changed byte instead of hashing the kept bytes
// again.
type logHasher struct {
	d     hash.Hash
	n     int64    // bytes written
	marks [][]byte // marks[i]: the digest's state after (i+1)*markEvery bytes
}

const markEvery = 1 << 20

func newLogHasher() *logHasher { return &logHasher{d: sha256.New()} }

func (h *logHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		next := (h.n/markEvery + 1) * markEvery
		k := min(int64(len(p)), next-h.n)
		h.d.Write(p[:k])
		h.n += k
		p = p[k:]
		if h.n == next {
			st, err := h.d.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil {
				panic(err) // crypto/sha256 always marshals
			}
			h.marks = append(h.marks, st)
		}
	}
	return n, nil
}

func (h *logHasher) Sum(b []byte) []byte { return h.d.Sum(b) }
func (h *logHasher) Size() int           { return sha256.Size }
func (h *logHasher) BlockSize() int      { return sha256.BlockSize }

func (h *logHasher) Reset() {
	h.d.Reset()
	h.n = 0
	h.marks = nil
}

// resume returns a hasher that has hashed the first bytes of what h
// hashed, up to the last mark at or before off (possibly none), and how
// many bytes that is.
func (h *logHasher) resume(off int64) (*logHasher, int64) {
	i := min(off/markEvery, int64(len(h.marks)))
	r := newLogHasher()
	if i == 0 {
		return r, 0
	}
	if err := r.d.(encoding.BinaryUnmarshaler).UnmarshalBinary(h.marks[i-1]); err != nil {
		return newLogHasher(), 0
	}
	r.n = i * markEvery
	r.marks = slices.Clone(h.marks[:i])
	return r, r.n
}
