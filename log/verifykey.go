package log

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"

	"filippo.io/edwards25519"
)

// VerifyKey is an Ed25519 public key prepared for many verifications: its
// point is decompressed once instead of on every call, which is about a
// tenth of the cost of crypto/ed25519.Verify. Verify accepts exactly what
// crypto/ed25519.Verify accepts (RFC 8032 cofactorless verification,
// canonical S required), checked by a differential fuzz test. It is safe
// for concurrent use.
type VerifyKey struct {
	pub  ed25519.PublicKey
	negA *edwards25519.Point
}

// NewVerifyKey prepares pub.
func NewVerifyKey(pub ed25519.PublicKey) (*VerifyKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("log: public key is not 32 bytes")
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, errors.New("log: public key is not a valid Ed25519 point")
	}
	return &VerifyKey{pub: bytes.Clone(pub), negA: new(edwards25519.Point).Negate(a)}, nil
}

// Verify reports whether sig is a valid signature of msg by the key.
func (k *VerifyKey) Verify(msg, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(k.pub)
	h.Write(msg)
	var digest [64]byte
	kh, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false
	}
	// R' = [S]B - [k]A must encode to R.
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(kh, k.negA, s)
	return bytes.Equal(sig[:32], r.Bytes())
}
