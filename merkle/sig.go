package merkle

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
)

// SigRecord is manifest.sig (SPEC.md §5.4): an Ed25519 signature by KeyID
// over the canonical JSON of the record without "sig", which binds the
// Merkle root (and through it every file's hash) at SignedAtUTC.
type SigRecord struct {
	MerkleRoot  string // merkle_root: the signed root, as hex text
	KeyID       string // key_id: "bp1_…" of the signing key
	SpecVersion string // spec_version: "1.0"
	SignedAtUTC string // signed_at_utc (SPEC.md §3.3)
	Sig         string // sig: standard Base64 of the 64-byte signature

	// Extra holds members other than the five above, in canonical key
	// order. The reference signs and verifies "everything but sig", so
	// the signature covers them. Signers leave Extra nil.
	Extra []canon.Member
}

var sigFields = []string{"merkle_root", "key_id", "spec_version", "signed_at_utc", "sig"}

// Errors returned by ParseManifestSig and VerifyManifestSig.
var (
	// ErrMalformedSig: manifest.sig is not a JSON object with the five
	// string fields (wrapped, naming the problem).
	ErrMalformedSig = errors.New("merkle: malformed manifest.sig")
	// ErrBadSignature: the signature does not verify (wrapped, saying
	// why: undecodable, wrong length, or not valid for the record).
	ErrBadSignature = errors.New("merkle: manifest.sig signature is not valid")
	// ErrStaleRoot: the signature is valid but signs another root than the
	// current one. Returned as a *StaleRootError.
	ErrStaleRoot = errors.New("merkle: manifest.sig signs a stale root")
)

// StaleRootError reports a valid manifest signature over a root that is
// not the current one, which is what the reference's writers leave behind:
// only bootstrap signs, and sync, import and append rewrite the root
// without re-signing. errors.Is(err, ErrStaleRoot) is true for it.
type StaleRootError struct {
	KeyID   string // who signed
	Signed  string // the root the signature covers
	Current string // the root it was checked against
}

func (e *StaleRootError) Error() string {
	return fmt.Sprintf("merkle: manifest.sig by %s is valid but signs root %s, current root is %s", e.KeyID, e.Signed, e.Current)
}

func (e *StaleRootError) Unwrap() error { return ErrStaleRoot }

// SignedBytes returns the message the signature covers: the canonical JSON
// of every member but sig.
func (r SigRecord) SignedBytes() ([]byte, error) {
	var b canon.ObjectBuilder
	for _, m := range r.Extra {
		for _, k := range sigFields {
			if m.Key == k {
				return nil, fmt.Errorf("merkle: manifest.sig extra member %q duplicates a field", k)
			}
		}
		b.Set(m.Key, m.Value)
	}
	b.Set("merkle_root", canon.StringValue(r.MerkleRoot))
	b.Set("key_id", canon.StringValue(r.KeyID))
	b.Set("spec_version", canon.StringValue(r.SpecVersion))
	b.Set("signed_at_utc", canon.StringValue(r.SignedAtUTC))
	msg, err := canon.Encode(b.Value())
	if err != nil {
		return nil, fmt.Errorf("merkle: encode manifest.sig: %w", err)
	}
	return msg, nil
}

// Encode returns the record as the reference's bootstrap writes
// manifest.sig: Python json.dumps(indent=2) with the members in the order
// merkle_root, key_id, spec_version, signed_at_utc, sig (Extra members, if
// any, before sig), and a line feed.
func (r SigRecord) Encode() ([]byte, error) {
	m := []canon.Member{
		{Key: "merkle_root", Value: canon.StringValue(r.MerkleRoot)},
		{Key: "key_id", Value: canon.StringValue(r.KeyID)},
		{Key: "spec_version", Value: canon.StringValue(r.SpecVersion)},
		{Key: "signed_at_utc", Value: canon.StringValue(r.SignedAtUTC)},
	}
	for _, x := range r.Extra {
		for _, k := range sigFields {
			if x.Key == k {
				return nil, fmt.Errorf("merkle: manifest.sig extra member %q duplicates a field", k)
			}
		}
	}
	m = append(m, r.Extra...)
	m = append(m, canon.Member{Key: "sig", Value: canon.StringValue(r.Sig)})
	b, err := canon.AppendIndent(nil, canon.OrderedObject(m...))
	if err != nil {
		return nil, fmt.Errorf("merkle: encode manifest.sig: %w", err)
	}
	return append(b, '\n'), nil
}

// SignManifest signs root (64 lowercase hex digits, the content of
// merkle_root.txt) with priv, whose key id is keyID, and returns the bytes
// of manifest.sig exactly as the reference's bootstrap writes them.
// signedAtUTC is the signing time in the reference's format
// (internal/pytime.FormatUTC); the caller reads the clock.
func SignManifest(priv ed25519.PrivateKey, keyID, root, signedAtUTC string) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("merkle: sign manifest: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if _, err := ParseHash(root); err != nil {
		return nil, fmt.Errorf("merkle: sign manifest: root: %w", err)
	}
	if keyID == "" || signedAtUTC == "" {
		return nil, errors.New("merkle: sign manifest: empty key id or signing time")
	}
	r := SigRecord{MerkleRoot: root, KeyID: keyID, SpecVersion: SpecVersion, SignedAtUTC: signedAtUTC}
	msg, err := r.SignedBytes()
	if err != nil {
		return nil, err
	}
	r.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
	return r.Encode()
}

// maxSigFile bounds ParseManifestSig. The reference's record is about
// 300 bytes.
const maxSigFile = 64 << 10

// ParseManifestSig parses manifest.sig (any JSON layout; the reference's
// files are indent-2 with or without a final newline). It requires an
// object whose members merkle_root, key_id, spec_version, signed_at_utc
// and sig are all present and strings; other members go to Extra. The
// reference would also try to verify a record that lacks some of them;
// no reference writer produces one, so here it is malformed.
func ParseManifestSig(data []byte) (SigRecord, error) {
	if len(data) > maxSigFile {
		return SigRecord{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedSig, len(data), maxSigFile)
	}
	v, err := canon.Limits{MaxSize: maxSigFile, MaxDepth: maxDepth}.Parse(data)
	if err != nil {
		return SigRecord{}, fmt.Errorf("%w: %v", ErrMalformedSig, err)
	}
	if v.Kind() != canon.Object {
		return SigRecord{}, fmt.Errorf("%w: top level is %s, want object", ErrMalformedSig, v.Kind())
	}
	var r SigRecord
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"merkle_root", &r.MerkleRoot},
		{"key_id", &r.KeyID},
		{"spec_version", &r.SpecVersion},
		{"signed_at_utc", &r.SignedAtUTC},
		{"sig", &r.Sig},
	} {
		x, ok := v.Get(f.key)
		if !ok {
			return SigRecord{}, fmt.Errorf("%w: missing %s", ErrMalformedSig, f.key)
		}
		if x.Kind() != canon.String {
			return SigRecord{}, fmt.Errorf("%w: %s is %s, want string", ErrMalformedSig, f.key, x.Kind())
		}
		*f.dst = x.Str()
	}
	r.Extra = extraMembers(v, sigFields...)
	return r, nil
}

// VerifyManifestSig checks r against the signer's public key pub. It
// returns nil when the signature is valid and r.MerkleRoot equals
// currentRoot; an error wrapping ErrBadSignature when the signature does
// not verify; and a *StaleRootError (errors.Is ErrStaleRoot) when the
// signature is valid but covers another root. An empty currentRoot skips
// the root comparison, as the reference's verifier does when it is given
// no expected root.
//
// The signature must be standard padded Base64 of 64 bytes; line breaks
// in it are ignored. (The reference decodes more leniently, discarding
// any character outside the alphabet, such as a space; no reference
// writer produces such text, and here it is a bad signature.) Looking up pub from
// r.KeyID, and deciding whether that key may sign, is the caller's part.
func VerifyManifestSig(r SigRecord, pub ed25519.PublicKey, currentRoot string) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("merkle: verify manifest.sig: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(r.Sig)
	if err != nil {
		return fmt.Errorf("%w: sig is not standard Base64: %v", ErrBadSignature, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: sig is %d bytes, want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
	}
	msg, err := r.SignedBytes()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: Ed25519 verification failed for key %s", ErrBadSignature, r.KeyID)
	}
	if currentRoot != "" && r.MerkleRoot != currentRoot {
		return &StaleRootError{KeyID: r.KeyID, Signed: r.MerkleRoot, Current: currentRoot}
	}
	return nil
}
