package bundles

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decode and DecodeReference return every problem with the
// bytes as a *FormatError that matches one of these with errors.Is; all of
// them except ErrTooLarge also match ErrCorrupt, so "is this file damaged or
// forged" is one test and "is it merely bigger than we accept" another.
var (
	// ErrCorrupt matches every error about a bundle's bytes except
	// ErrTooLarge: a damaged zstd frame, a truncated file, a bad header or
	// event line, a content hash or count that does not match.
	ErrCorrupt = errors.New("bundles: corrupt bundle")
	// ErrTooLarge: the bundle exceeds a Limits bound (compressed or
	// decompressed size, zstd window, header or line length, event count).
	ErrTooLarge = errors.New("bundles: bundle exceeds limits")
	// ErrNotBundle: the input does not start like a bundle of the kind
	// asked for (not a zstd frame, or not a reference header).
	ErrNotBundle = errors.New("bundles: not a bundle of this kind")
	// ErrFormatVersion: the header names a format this reader does not know.
	ErrFormatVersion = errors.New("bundles: unsupported bundle format")
	// ErrBadHeader: the header line is not a valid header.
	ErrBadHeader = errors.New("bundles: bad header")
	// ErrBadEvent: an event line is not a JSON object.
	ErrBadEvent = errors.New("bundles: bad event line")
	// ErrNotCanonical: a line parses but is not byte-identical to its
	// canonical encoding, or cannot be canonicalised at all.
	ErrNotCanonical = errors.New("bundles: line is not canonical JSON")
	// ErrEventCount: event_count differs from the number of event lines.
	ErrEventCount = errors.New("bundles: event_count does not match the events present")
	// ErrContentHash: the event section does not hash to content_sha256.
	ErrContentHash = errors.New("bundles: content does not match content_sha256")
)

// Errors from VerifySignature. They are about trust, not bytes, so they do
// not match ErrCorrupt.
var (
	// ErrUnknownSender: the sender's key is not in the registry, has no
	// usable public key, or is revoked (then the error also matches
	// log.ErrRevokedKey).
	ErrUnknownSender = errors.New("bundles: sender key is not trusted")
	// ErrBadSignature: the header's sig does not verify under the sender's
	// key, or is not base64 of 64 bytes.
	ErrBadSignature = errors.New("bundles: bundle signature does not verify")
)

// FormatError locates a problem in a bundle. Read it with errors.AsType.
type FormatError struct {
	// Offset is the byte offset in the decompressed content (for a
	// reference bundle: in the file) where the problem was found, or -1
	// when the problem is with the compressed stream as a whole.
	Offset int64
	// Line is the 1-based line number (1 is the header), or 0 when the
	// problem is not about one line.
	Line int
	// Msg says what is wrong.
	Msg string
	// Err is the sentinel the error matches (ErrTooLarge, ErrBadHeader, ...).
	Err error
	// Cause is the underlying error, if any (a zstd or JSON syntax error).
	Cause error
}

func (e *FormatError) Error() string {
	what := "bundles: "
	if e.Err != nil {
		what = e.Err.Error() + ": "
	}
	switch {
	case e.Line > 0:
		return fmt.Sprintf("%sline %d (byte %d): %s", what, e.Line, e.Offset, e.Msg)
	case e.Offset >= 0:
		return fmt.Sprintf("%sbyte %d: %s", what, e.Offset, e.Msg)
	}
	return what + e.Msg
}

// Unwrap returns the sentinel, ErrCorrupt for everything but ErrTooLarge,
// and the cause.
func (e *FormatError) Unwrap() []error {
	out := make([]error, 0, 3)
	if e.Err != nil {
		out = append(out, e.Err)
	}
	if e.Err != ErrTooLarge && e.Err != ErrCorrupt {
		out = append(out, ErrCorrupt)
	}
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	return out
}

func formatErr(sentinel error, off int64, line int, cause error, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Line: line, Msg: fmt.Sprintf(format, args...), Err: sentinel, Cause: cause}
}
