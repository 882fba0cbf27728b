package bundles

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// Format is the value of the header's format member.
const Format = "backpack.bundle.v1"

// Header member names, in canonical (sorted) order.
const (
	fieldUID       = "backpack_uid"
	fieldBasis     = "basis_frontier"
	fieldContent   = "content_sha256"
	fieldCreated   = "created_at_utc"
	fieldCount     = "event_count"
	fieldFiles     = "files" // optional
	fieldFormat    = "format"
	fieldSenderFr  = "sender_frontier"
	fieldSenderID  = "sender_key_id"
	fieldSenderPub = "sender_public_key_b64" // optional
	fieldSig       = "sig"
)

var headerFields = []string{fieldUID, fieldBasis, fieldContent, fieldCreated, fieldCount, fieldFiles, fieldFormat, fieldSenderFr, fieldSenderID, fieldSenderPub, fieldSig}

// headerLimits parses the header line (its size is checked before).
const headerDepth = 16

// Header is the first line of a backpack bundle.
type Header struct {
	// UID is the backpack_uid of the backpack the events belong to.
	UID string
	// SenderKeyID is the key id of the exporting device; it signed the
	// header.
	SenderKeyID string
	// SenderPublicKey is the exporting device's Ed25519 public key
	// (sender_public_key_b64), which derives SenderKeyID (Decode checks
	// it). It lets a receiver that does not trust the sender yet learn the
	// key, so that a person can trust it by its id later; it never makes
	// the sender trusted. Encode sets it from the signing key; nil for a
	// bundle written before the member existed.
	SenderPublicKey ed25519.PublicKey
	// Files are the static files a full export carries (files, sorted by
	// path): what a new device needs to rebuild the backpack from the
	// bundle. Only allowed with an empty Basis; nil when absent.
	Files []File
	// Sender is what the sender held when it exported (sender_frontier).
	Sender bplog.Frontier
	// Basis is the frontier the delta was computed against: the bundle
	// holds the sender's events that a holder of Basis lacks. Empty (or
	// nil) for a full export.
	Basis bplog.Frontier
	// EventCount is the number of event lines (set by Encode).
	EventCount int64
	// ContentSHA256 is SHA-256 of the event section (set by Encode).
	ContentSHA256 [sha256.Size]byte
	// CreatedAt is created_at_utc, as the caller passed it to Encode
	// (normally pytime.FormatUTC of the export time).
	CreatedAt string
	// Sig is the base64 Ed25519 signature over the canonical header
	// without sig (set by Encode).
	Sig string
}

// Full reports whether the bundle is a full export: its basis frontier
// is empty, so it holds every event the sender held.
func (h *Header) Full() bool { return len(h.Basis) == 0 }

// value returns the header as a canonical object, without sig when
// withSig is false.
func (h *Header) value(withSig bool) canon.Value {
	// Headers carry heads and counts only (ancestors are for negotiating
	// a delta, not for describing one).
	basis := h.Basis.WithoutAncestors()
	sender := h.Sender.WithoutAncestors()
	var b canon.ObjectBuilder
	b.Set(fieldFormat, canon.StringValue(Format)).
		Set(fieldUID, canon.StringValue(h.UID)).
		Set(fieldSenderID, canon.StringValue(h.SenderKeyID)).
		Set(fieldSenderFr, sender.Value()).
		Set(fieldBasis, basis.Value()).
		Set(fieldCount, canon.IntValue(h.EventCount)).
		Set(fieldContent, canon.StringValue(hex.EncodeToString(h.ContentSHA256[:]))).
		Set(fieldCreated, canon.StringValue(h.CreatedAt))
	if h.SenderPublicKey != nil {
		b.Set(fieldSenderPub, canon.StringValue(base64.StdEncoding.EncodeToString(h.SenderPublicKey)))
	}
	if h.Files != nil {
		b.Set(fieldFiles, filesValue(h.Files))
	}
	if withSig {
		b.Set(fieldSig, canon.StringValue(h.Sig))
	}
	return b.Value()
}

// Bundle is a decoded backpack bundle. Decode has checked its structure,
// count and content hash; the signature is checked by VerifySignature, and
// the events' own ids and signatures by the importer.
type Bundle struct {
	Header Header
	// Events are the event lines, byte for byte as in the bundle (canonical
	// JSON objects, without the newline).
	Events [][]byte
	// signed is the canonical header without sig: the signed message.
	signed []byte
}

// SignedBytes returns the bytes the header's signature covers: the
// canonical header without sig.
func (b *Bundle) SignedBytes() []byte { return b.signed }

// VerifySignature checks the header's signature with the sender's key in
// reg. It returns ErrUnknownSender when reg does not trust the key (unknown
// or revoked, or reg is nil) and ErrBadSignature when the signature does not verify. The
// content is covered through content_sha256, which Decode checked.
//
// A valid signature says which device exported the bundle; it says nothing
// about the events, which carry their own signatures and must be verified
// one by one.
func (b *Bundle) VerifySignature(reg *bplog.Registry) error {
	if reg == nil {
		return fmt.Errorf("%w: %s (no key registry)", ErrUnknownSender, b.Header.SenderKeyID)
	}
	k, err := reg.ResolveVerifier(b.Header.SenderKeyID)
	if err != nil {
		if errors.Is(err, bplog.ErrRevokedKey) {
			return fmt.Errorf("%w: %s: %w", ErrUnknownSender, b.Header.SenderKeyID, err)
		}
		return fmt.Errorf("%w: %s", ErrUnknownSender, b.Header.SenderKeyID)
	}
	sig, err := b.sig()
	if err != nil {
		return err
	}
	if !k.Verify(b.signed, sig) {
		return ErrBadSignature
	}
	return nil
}

// VerifyCarried checks the header's signature with the public key the
// header carries (sender_public_key_b64). It returns ErrUnknownSender when
// the bundle carries no key and ErrBadSignature when the signature does
// not verify. Success proves only that the holder of that key wrote this
// header (files and events included, through content_sha256): it is what
// a receiver checks before it records the key as seen, never a reason to
// trust the key or the events.
func (b *Bundle) VerifyCarried() error {
	if b.Header.SenderPublicKey == nil {
		return fmt.Errorf("%w: %s (the bundle carries no public key)", ErrUnknownSender, b.Header.SenderKeyID)
	}
	sig, err := b.sig()
	if err != nil {
		return err
	}
	if !ed25519.Verify(b.Header.SenderPublicKey, b.signed, sig) {
		return ErrBadSignature
	}
	return nil
}

func (b *Bundle) sig() ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(b.Header.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: sig is not base64 of %d bytes", ErrBadSignature, ed25519.SignatureSize)
	}
	return sig, nil
}

// EncodeOptions tune Encode. The zero value is the default.
type EncodeOptions struct {
	// Level is the zstd level (default zstd.SpeedDefault).
	Level zstd.EncoderLevel
	// Limits are those of the readers the bundle is for (zero fields:
	// the defaults). Encode refuses carried files and a header line that
	// such a reader would refuse.
	Limits Limits
}

// Encode writes a bundle of events to w and returns the header as written.
// From h it takes UID, Sender, Basis, CreatedAt and Files (only with an
// empty Basis); SenderKeyID and SenderPublicKey may be empty (they are
// derived from key) but must match key if set. Encode sets EventCount,
// ContentSHA256 and Sig. Every event must be a canonical JSON
// object line without newline (as log.Signer.Seal returns it); it is
// written byte for byte.
func Encode(w io.Writer, h Header, events [][]byte, key ed25519.PrivateKey, opts EncodeOptions) (Header, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Header{}, errors.New("bundles: encode: private key is not an Ed25519 key")
	}
	id := bplog.KeyID(key.Public().(ed25519.PublicKey))
	switch {
	case h.SenderKeyID == "":
		h.SenderKeyID = id
	case h.SenderKeyID != id:
		return Header{}, fmt.Errorf("bundles: encode: sender_key_id %s is not the signing key (%s)", h.SenderKeyID, id)
	}
	pub := key.Public().(ed25519.PublicKey)
	if h.SenderPublicKey != nil && !pub.Equal(h.SenderPublicKey) {
		return Header{}, fmt.Errorf("bundles: encode: sender_public_key_b64 is not the signing key (%s)", id)
	}
	h.SenderPublicKey = pub
	lim := opts.Limits.withDefaults()
	if h.Files != nil {
		if !h.Full() {
			return Header{}, errors.New("bundles: encode: files are carried only by a full export (empty basis_frontier)")
		}
		if ferr := checkFiles(h.Files, lim); ferr != nil {
			return Header{}, fmt.Errorf("bundles: encode: %s: %w", ferr.Msg, ferr.Err)
		}
		h.Files = sortedFiles(h.Files)
	}
	if h.UID == "" {
		return Header{}, errors.New("bundles: encode: backpack_uid is empty")
	}
	if h.CreatedAt == "" {
		return Header{}, errors.New("bundles: encode: created_at_utc is empty")
	}
	hash := sha256.New()
	var scratch []byte
	contentLen := int64(0)
	for i, line := range events {
		var ferr *FormatError
		if scratch, ferr = checkEvent(line, scratch, 0, i+2); ferr != nil {
			return Header{}, fmt.Errorf("bundles: encode: event %d: %s", i, ferr.Msg)
		}
		hash.Write(line)
		hash.Write(newline)
		contentLen += int64(len(line)) + 1
	}
	h.EventCount = int64(len(events))
	hash.Sum(h.ContentSHA256[:0])
	h.Sig = ""
	signed, err := canon.Encode(h.value(false))
	if err != nil {
		return Header{}, fmt.Errorf("bundles: encode: header: %w", err)
	}
	h.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, signed))
	head, err := canon.Encode(h.value(true))
	if err != nil {
		return Header{}, fmt.Errorf("bundles: encode: header: %w", err)
	}
	if len(head) > lim.MaxHeader {
		return Header{}, fmt.Errorf("bundles: encode: the header is %d bytes, more than the limit of %d (too many or too large files?): %w", len(head), lim.MaxHeader, ErrTooLarge)
	}

	level := opts.Level
	if level == 0 {
		level = zstd.SpeedDefault
	}
	// The window need not exceed the content: small bundles then cost
	// little memory to write and to read. The frame declares the content
	// size, which the decoder checks.
	size := int64(len(head)) + 1 + contentLen
	window := zstd.MinWindowSize
	for int64(window) < size && window < maxEncoderWindow {
		window <<= 1
	}
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true), zstd.WithWindowSize(window))
	if err != nil {
		return Header{}, fmt.Errorf("bundles: encode: %w", err)
	}
	zw.ResetContentSize(w, size)
	write := func(b []byte) {
		if err == nil {
			_, err = zw.Write(b)
		}
	}
	write(head)
	write(newline)
	for _, line := range events {
		write(line)
		write(newline)
	}
	if err != nil {
		zw.Close()
		return Header{}, fmt.Errorf("bundles: encode: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Header{}, fmt.Errorf("bundles: encode: %w", err)
	}
	return h, nil
}

var newline = []byte{'\n'}

// maxEncoderWindow is the largest zstd window Encode uses.
const maxEncoderWindow = 8 << 20

// checkEvent checks that line is a JSON object in canonical form. scratch
// is reused for the canonical encoding and returned. off and lineNo place
// errors.
func checkEvent(line, scratch []byte, off int64, lineNo int) ([]byte, *FormatError) {
	if len(line) == 0 {
		return scratch, formatErr(ErrBadEvent, off, lineNo, nil, "empty line")
	}
	v, err := bplog.ParseLine(line)
	if err != nil {
		return scratch, formatErr(ErrBadEvent, off, lineNo, err, "%v", err)
	}
	if v.Kind() != canon.Object {
		return scratch, formatErr(ErrBadEvent, off, lineNo, nil, "a JSON %s, not an object", v.Kind())
	}
	scratch, err = canon.AppendEncode(scratch[:0], v)
	if err != nil {
		return scratch, formatErr(ErrNotCanonical, off, lineNo, err, "cannot be canonicalised: %v", err)
	}
	if !bytes.Equal(scratch, line) {
		i := 0
		for i < len(line) && i < len(scratch) && line[i] == scratch[i] {
			i++
		}
		return scratch, formatErr(ErrNotCanonical, off+int64(i), lineNo, nil, "differs from its canonical encoding at byte %d of the line", i)
	}
	return scratch, nil
}
