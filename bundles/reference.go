package bundles

import (
	"bytes"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// ReferenceType is the type member of a reference delta bundle's header.
const ReferenceType = "provara_delta_v1"

// ReferenceBundle is a decoded provara_delta_v1 bundle (SPEC.md §8.6-8.7).
//
// Keys is whatever the exporter put in its header. It is NOT trusted and
// must never be used to verify the events: anyone can write a bundle whose
// keys vouch for its own forged events (the reference does trust them,
// SPEC.md §8.7). Verify events against the receiving backpack's own
// registry; an unknown key is a reason to quarantine, not to learn it.
type ReferenceBundle struct {
	// Header is the whole header object.
	Header canon.Value
	// EventCount is the header's event_count as carried (null if absent).
	// The reference never checks it, and neither does DecodeReference.
	EventCount canon.Value
	// ExportedAt is exported_at ("" if absent or not a string).
	ExportedAt string
	// SinceHash is since_hash: a string or null.
	SinceHash canon.Value
	// Keys is the header's keys array ([] if absent). UNTRUSTED: see above.
	Keys canon.Value
	// Events are the event lines that parsed as JSON objects, re-encoded
	// canonically (the reference re-serialises every event it reads), in
	// bundle order. EventLines[i] is the line number of Events[i].
	Events     [][]byte
	EventLines []int
	// Rejected lists the lines that are not usable events (not JSON, not
	// an object, not canonicalisable), each with its line number and byte
	// offset in the file. The reference counts such lines as rejected and
	// imports the rest; so can the caller, but it should tell the user.
	Rejected []*FormatError
}

// EncodeReference writes a provara_delta_v1 bundle exactly as the
// reference's export_delta does: the canonical header {event_count,
// exported_at, keys, since_hash, type}, then one canonical line per event,
// joined by "\n" with a final "\n". keys is the "keys" array of the
// exporter's identity/keys.json (the zero Value, null, writes [] as the
// reference does when the file is missing); sinceHash is a string or null;
// exportedAt is the time text (pytime.FormatUTC). Each event must be one
// JSON object; it is re-encoded canonically, as the reference does.
func EncodeReference(w io.Writer, events [][]byte, keys canon.Value, sinceHash canon.Value, exportedAt string) error {
	switch keys.Kind() {
	case canon.Null:
		keys = canon.ArrayValue()
	case canon.Array:
	default:
		return fmt.Errorf("bundles: encode reference: keys must be an array (it is a JSON %s)", keys.Kind())
	}
	if k := sinceHash.Kind(); k != canon.Null && k != canon.String {
		return fmt.Errorf("bundles: encode reference: since_hash must be a string or null (it is a JSON %s)", k)
	}
	var h canon.ObjectBuilder
	h.Set("type", canon.StringValue(ReferenceType)).
		Set("since_hash", sinceHash).
		Set("event_count", canon.IntValue(int64(len(events)))).
		Set("exported_at", canon.StringValue(exportedAt)).
		Set("keys", keys)
	buf, err := canon.AppendEncode(make([]byte, 0, 64<<10), h.Value())
	if err != nil {
		return fmt.Errorf("bundles: encode reference: header: %w", err)
	}
	buf = append(buf, '\n')
	for i, line := range events {
		v, err := bplog.ParseLine(line)
		if err != nil {
			return fmt.Errorf("bundles: encode reference: event %d: %w", i, err)
		}
		if v.Kind() != canon.Object {
			return fmt.Errorf("bundles: encode reference: event %d: a JSON %s, not an object", i, v.Kind())
		}
		if buf, err = canon.AppendEncode(buf, v); err != nil {
			return fmt.Errorf("bundles: encode reference: event %d: %w", i, err)
		}
		buf = append(buf, '\n')
		if len(buf) >= 1<<20 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err = w.Write(buf)
	return err
}

// DecodeReference reads a provara_delta_v1 bundle the way the reference's
// import_delta reads one: the input must be UTF-8; it is stripped of
// Python whitespace at both ends and split on "\n"; lines that are blank
// after stripping are skipped; the first remaining line is the header and
// must be an object with type "provara_delta_v1". Unlike the reference it
// is bounded by lim (MaxDecompressed for the whole input, MaxHeader,
// MaxLine, MaxEvents), and it reports the event lines it cannot use in
// Rejected instead of skipping them silently.
func DecodeReference(r io.Reader, lim Limits) (*ReferenceBundle, error) {
	lim = lim.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, lim.MaxDecompressed+1))
	if err != nil {
		return nil, fmt.Errorf("bundles: read: %w", err)
	}
	if int64(len(data)) > lim.MaxDecompressed {
		return nil, formatErr(ErrTooLarge, lim.MaxDecompressed, 0, nil, "bundle is larger than the limit of %d bytes", lim.MaxDecompressed)
	}
	if bytes.HasPrefix(data, zstdMagic) {
		return nil, formatErr(ErrNotBundle, 0, 0, nil, "this is a zstd frame (a backpack bundle: use Decode), not a provara_delta_v1 bundle")
	}
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, formatErr(ErrCorrupt, int64(off), 0, nil, "bundle is not valid UTF-8")
	}
	// text.strip(): only the ends of the whole text lose whitespace, so the
	// first line loses it on the left and the last on the right.
	begin, end := pyStripBounds(data)
	out := &ReferenceBundle{}
	lineNo := 1 + bytes.Count(data[:begin], newline)
	events := int64(0)
	header := true
	for pos := begin; pos < end; lineNo++ {
		next := bytes.IndexByte(data[pos:end], '\n')
		if next < 0 {
			next = end - pos
		}
		line := data[pos : pos+next]
		off := int64(pos)
		pos += next + 1
		if isPyBlank(line) {
			continue
		}
		if header {
			header = false
			if len(line) > lim.MaxHeader {
				return nil, formatErr(ErrTooLarge, off, lineNo, nil, "header longer than the limit of %d bytes", lim.MaxHeader)
			}
			if err := out.parseHeader(line, off, lineNo); err != nil {
				return nil, err
			}
			continue
		}
		if events++; events > lim.MaxEvents {
			return nil, formatErr(ErrTooLarge, off, lineNo, nil, "more than the limit of %d event lines", lim.MaxEvents)
		}
		if len(line) > lim.MaxLine {
			return nil, formatErr(ErrTooLarge, off, lineNo, nil, "event line longer than the limit of %d bytes", lim.MaxLine)
		}
		v, err := bplog.ParseLine(line)
		if err != nil {
			out.Rejected = append(out.Rejected, formatErr(ErrBadEvent, off, lineNo, err, "%v", err))
			continue
		}
		if v.Kind() != canon.Object {
			out.Rejected = append(out.Rejected, formatErr(ErrBadEvent, off, lineNo, nil, "a JSON %s, not an object", v.Kind()))
			continue
		}
		enc, err := canon.Encode(v)
		if err != nil {
			out.Rejected = append(out.Rejected, formatErr(ErrNotCanonical, off, lineNo, err, "cannot be canonicalised: %v", err))
			continue
		}
		out.Events = append(out.Events, enc)
		out.EventLines = append(out.EventLines, lineNo)
	}
	if header {
		return nil, formatErr(ErrCorrupt, 0, 0, nil, "bundle is empty")
	}
	return out, nil
}

func (b *ReferenceBundle) parseHeader(line []byte, off int64, lineNo int) error {
	v, err := canon.Limits{MaxSize: len(line) + 1, MaxDepth: headerDepth}.Parse(line)
	if err != nil {
		return formatErr(ErrBadHeader, off, lineNo, err, "%v", err)
	}
	if v.Kind() != canon.Object {
		return formatErr(ErrBadHeader, off, lineNo, nil, "a JSON %s, not an object", v.Kind())
	}
	if t := v.Field("type"); t.Kind() != canon.String || t.Str() != ReferenceType {
		if t.Kind() == canon.String {
			return formatErr(ErrFormatVersion, off, lineNo, nil, "type is %q, not %q", t.Str(), ReferenceType)
		}
		return formatErr(ErrBadHeader, off, lineNo, nil, "no type %q: not a delta bundle header", ReferenceType)
	}
	keys, ok := v.Get("keys")
	switch {
	case !ok:
		keys = canon.ArrayValue()
	case keys.Kind() != canon.Array:
		return formatErr(ErrBadHeader, off, lineNo, nil, "keys must be an array (it is a JSON %s)", keys.Kind())
	}
	since := v.Field("since_hash")
	if k := since.Kind(); k != canon.Null && k != canon.String {
		return formatErr(ErrBadHeader, off, lineNo, nil, "since_hash must be a string or null (it is a JSON %s)", k)
	}
	b.Header, b.Keys, b.SinceHash = v, keys, since
	b.EventCount = v.Field("event_count")
	b.ExportedAt = v.Field("exported_at").Str()
	return nil
}

// isPySpaceByte reports whether the ASCII byte c is whitespace for Python's
// str.strip.
func isPySpaceByte(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)
}

// isPySpace reports whether Python's str.isspace is true for r.
func isPySpace(r rune) bool {
	if r < utf8.RuneSelf {
		return isPySpaceByte(byte(r))
	}
	switch r {
	case 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// pyStripBounds returns the bounds of data (valid UTF-8) after Python's
// str.strip().
func pyStripBounds(data []byte) (begin, end int) {
	for begin < len(data) {
		r, size := utf8.DecodeRune(data[begin:])
		if !isPySpace(r) {
			break
		}
		begin += size
	}
	end = len(data)
	for end > begin {
		r, size := utf8.DecodeLastRune(data[begin:end])
		if !isPySpace(r) {
			break
		}
		end -= size
	}
	return begin, end
}

// isPyBlank reports whether line is empty after Python's str.strip().
func isPyBlank(line []byte) bool {
	b, e := pyStripBounds(line)
	return b == e
}
