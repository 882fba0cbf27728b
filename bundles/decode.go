package bundles

import (
	"bufio"
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

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xB5, 0x2F, 0xFD}

// Kind is what Sniff recognises.
type Kind uint8

// Kinds of bundle.
const (
	KindUnknown   Kind = iota
	KindBackpack       // a backpack bundle (a zstd frame)
	KindReference      // a reference provara_delta_v1 bundle (JSON text)
)

func (k Kind) String() string {
	switch k {
	case KindBackpack:
		return "backpack bundle"
	case KindReference:
		return "provara_delta_v1 bundle"
	}
	return "unknown"
}

// Sniff tells the kind of bundle from its first bytes (four are enough): a
// backpack bundle starts with the zstd magic 28 B5 2F FD, a reference
// bundle with '{' after optional ASCII whitespace. It does not validate.
func Sniff(first []byte) Kind {
	if bytes.HasPrefix(first, zstdMagic) {
		return KindBackpack
	}
	for _, c := range first {
		switch {
		case c == '{':
			return KindReference
		case isPySpaceByte(c):
		default:
			return KindUnknown
		}
	}
	return KindUnknown
}

// Decode reads a backpack bundle from r within lim. It checks, in this
// order and failing at the first problem: the zstd magic, the zstd stream
// (window, checksum, truncation) and the size bounds as it goes; the
// header line (canonical JSON, format, members and types); the number of
// event lines against event_count and MaxEvents; then, with all lines
// read, content_sha256; then that every event line is a canonical JSON
// object. It does not check the signature (VerifySignature) or anything
// inside the events.
//
// Problems with the bytes are *FormatError values; an error reading r is
// returned wrapped as it is.
func Decode(r io.Reader, lim Limits) (*Bundle, error) {
	lim = lim.withDefaults()
	cr := &countReader{r: r, max: lim.MaxCompressed}
	var magic [4]byte
	if n, err := io.ReadFull(cr, magic[:]); err != nil {
		if cr.err != nil {
			return nil, fmt.Errorf("bundles: read: %w", cr.err)
		}
		return nil, formatErr(ErrNotBundle, -1, 0, nil, "input is %d bytes, too short for a zstd frame", n)
	}
	if !bytes.Equal(magic[:], zstdMagic) {
		msg := "input does not start with the zstd magic 28 b5 2f fd"
		if Sniff(magic[:]) == KindReference {
			msg += " (it looks like a provara_delta_v1 bundle: use DecodeReference)"
		}
		return nil, formatErr(ErrNotBundle, -1, 0, nil, "%s", msg)
	}
	d := decoder{lim: lim, cr: cr}
	zr, err := zstd.NewReader(io.MultiReader(bytes.NewReader(magic[:]), cr),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(MaxWindow),
		zstd.WithDecoderMaxWindow(MaxWindow))
	if err != nil {
		return nil, d.streamErr(err)
	}
	defer zr.Close()
	d.dr = &countReader{r: zr, max: lim.MaxDecompressed}
	d.br = bufio.NewReaderSize(d.dr, 64<<10)
	return d.decode()
}

type decoder struct {
	lim  Limits
	cr   *countReader // compressed input
	dr   *countReader // decompressed content
	br   *bufio.Reader
	off  int64 // offset of the next line in the content
	line int   // number of the last line read
	long []byte
	slab []byte
}

func (d *decoder) decode() (*Bundle, error) {
	head, err := d.readLine(d.lim.MaxHeader, "header")
	if err != nil {
		return nil, err
	}
	if head == nil {
		return nil, formatErr(ErrCorrupt, 0, 1, nil, "no header line: the content is empty or has no newline")
	}
	b, ferr := parseHeader(head, d.lim)
	if ferr != nil {
		return nil, ferr
	}
	if b.Header.EventCount > d.lim.MaxEvents {
		return nil, formatErr(ErrTooLarge, 0, 1, nil, "event_count %d is more than the limit of %d events", b.Header.EventCount, d.lim.MaxEvents)
	}
	contentStart := d.off
	hash := sha256.New()
	var offs []int64
	for {
		start := d.off
		line, err := d.readLine(d.lim.MaxLine, "event line")
		if err != nil {
			return nil, err
		}
		if line == nil {
			break
		}
		n := int64(len(b.Events))
		if n >= b.Header.EventCount {
			return nil, formatErr(ErrEventCount, start, d.line, nil, "more event lines than event_count %d", b.Header.EventCount)
		}
		hash.Write(line)
		hash.Write(newline)
		b.Events = append(b.Events, d.keep(line))
		offs = append(offs, start)
	}
	if n := int64(len(b.Events)); n != b.Header.EventCount {
		return nil, formatErr(ErrEventCount, d.off, 0, nil, "event_count is %d but the bundle holds %d event lines", b.Header.EventCount, n)
	}
	var sum [sha256.Size]byte
	if hash.Sum(sum[:0]); sum != b.Header.ContentSHA256 {
		return nil, formatErr(ErrContentHash, contentStart, 0, nil, "the event section hashes to %x, the header says %x", sum, b.Header.ContentSHA256)
	}
	var scratch []byte
	for i, line := range b.Events {
		var ferr *FormatError
		if scratch, ferr = checkEvent(line, scratch, offs[i], i+2); ferr != nil {
			return nil, ferr
		}
	}
	return b, nil
}

// keep copies line into the current slab so that events share a few large
// allocations.
func (d *decoder) keep(line []byte) []byte {
	const slabSize = 1 << 20
	if len(line) > cap(d.slab)-len(d.slab) {
		d.slab = make([]byte, 0, max(slabSize, len(line)))
	}
	start := len(d.slab)
	d.slab = append(d.slab, line...)
	return d.slab[start:len(d.slab):len(d.slab)]
}

// readLine returns the next line without its newline, valid until the next
// call, or nil at the end of the content. A line longer than max, a final
// line without newline and stream errors are errors.
func (d *decoder) readLine(max int, what string) ([]byte, error) {
	start := d.off
	d.line++
	d.long = d.long[:0]
	for {
		frag, err := d.br.ReadSlice('\n')
		n := len(d.long) + len(frag) // bytes of this line so far, newline included if err == nil
		if err == nil {
			n--
		}
		if n > max {
			return nil, formatErr(ErrTooLarge, start, d.line, nil, "%s longer than the limit of %d bytes", what, max)
		}
		switch {
		case err == nil:
			d.off += int64(n + 1)
			if len(d.long) == 0 {
				return frag[:len(frag)-1], nil
			}
			d.long = append(d.long, frag...)
			return d.long[:n], nil
		case errors.Is(err, bufio.ErrBufferFull):
			d.long = append(d.long, frag...)
		case err == io.EOF:
			if n > 0 {
				return nil, formatErr(ErrCorrupt, start, d.line, nil, "the content ends inside a line (no final newline)")
			}
			return nil, nil
		default:
			return nil, d.streamErr(err)
		}
	}
}

// streamErr turns an error from the zstd reader into a bundle error.
func (d *decoder) streamErr(err error) error {
	switch {
	case d.cr.over:
		return formatErr(ErrTooLarge, -1, 0, nil, "compressed size is more than the limit of %d bytes", d.lim.MaxCompressed)
	case d.cr.err != nil:
		// The input failed: an I/O error, not a property of the bundle.
		return fmt.Errorf("bundles: read: %w", d.cr.err)
	case d.dr != nil && d.dr.over:
		return formatErr(ErrTooLarge, d.lim.MaxDecompressed, 0, nil, "decompressed size is more than the limit of %d bytes", d.lim.MaxDecompressed)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return formatErr(ErrTooLarge, -1, 0, err, "zstd window is larger than the limit of %d bytes", MaxWindow)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return formatErr(ErrCorrupt, -1, 0, err, "truncated: the zstd stream ends early")
	case errors.Is(err, zstd.ErrMagicMismatch):
		return formatErr(ErrCorrupt, -1, 0, err, "data after the zstd frame is not a zstd frame")
	case errors.Is(err, zstd.ErrCRCMismatch):
		return formatErr(ErrCorrupt, -1, 0, err, "zstd checksum mismatch: the compressed bytes are damaged")
	}
	return formatErr(ErrCorrupt, -1, 0, err, "zstd: %v", err)
}

// countReader counts bytes read and fails once more than max were read.
// It remembers whether the limit or the underlying reader failed, so
// errors that come back through the zstd decoder can be told apart.
type countReader struct {
	r    io.Reader
	n    int64
	max  int64
	over bool
	err  error // the first error of r other than io.EOF
}

var errOverLimit = errors.New("bundles: limit reached")

func (c *countReader) Read(p []byte) (int, error) {
	if c.over {
		return 0, errOverLimit
	}
	if rest := c.max + 1 - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		c.over = true
		return n, errOverLimit
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// parseHeader parses and checks the header line; lim has its defaults.
func parseHeader(line []byte, lim Limits) (*Bundle, *FormatError) {
	bad := func(sentinel error, cause error, format string, args ...any) (*Bundle, *FormatError) {
		return nil, formatErr(sentinel, 0, 1, cause, format, args...)
	}
	v, err := canon.Limits{MaxSize: len(line) + 1, MaxDepth: headerDepth}.Parse(line)
	if err != nil {
		return bad(ErrBadHeader, err, "%v", err)
	}
	if v.Kind() != canon.Object {
		return bad(ErrBadHeader, nil, "a JSON %s, not an object", v.Kind())
	}
	f, ok := v.Get(fieldFormat)
	if !ok || f.Kind() != canon.String {
		return bad(ErrBadHeader, nil, "no format string: not a backpack bundle header")
	}
	if f.Str() != Format {
		return bad(ErrFormatVersion, nil, "format is %q; this reader knows %q", f.Str(), Format)
	}
	for _, m := range v.Members() {
		known := false
		for _, k := range headerFields {
			known = known || m.Key == k
		}
		if !known {
			return bad(ErrBadHeader, nil, "unknown member %q", m.Key)
		}
	}
	str := func(key string) (string, *FormatError) {
		f, ok := v.Get(key)
		if !ok || f.Kind() != canon.String || f.Str() == "" {
			return "", formatErr(ErrBadHeader, 0, 1, nil, "%s must be a non-empty string", key)
		}
		return f.Str(), nil
	}
	b := &Bundle{}
	h := &b.Header
	var ferr *FormatError
	if h.UID, ferr = str(fieldUID); ferr != nil {
		return nil, ferr
	}
	if h.SenderKeyID, ferr = str(fieldSenderID); ferr != nil {
		return nil, ferr
	}
	if h.CreatedAt, ferr = str(fieldCreated); ferr != nil {
		return nil, ferr
	}
	if h.Sig, ferr = str(fieldSig); ferr != nil {
		return nil, ferr
	}
	content, ferr := str(fieldContent)
	if ferr != nil {
		return nil, ferr
	}
	if n, err := hex.Decode(h.ContentSHA256[:], []byte(content)); err != nil || n != sha256.Size || len(content) != 2*sha256.Size || content != hex.EncodeToString(h.ContentSHA256[:]) {
		return bad(ErrBadHeader, nil, "content_sha256 must be 64 lowercase hex digits")
	}
	count, ok := v.Field(fieldCount).Int64()
	if v.Field(fieldCount).Kind() != canon.Int || !ok || count < 0 {
		return bad(ErrBadHeader, nil, "event_count must be a non-negative integer")
	}
	h.EventCount = count
	for _, fr := range []struct {
		key string
		dst *bplog.Frontier
	}{{fieldSenderFr, &h.Sender}, {fieldBasis, &h.Basis}} {
		fv, ok := v.Get(fr.key)
		if !ok {
			return bad(ErrBadHeader, nil, "%s is missing", fr.key)
		}
		f, err := bplog.FrontierFromValue(fv)
		if err != nil {
			return bad(ErrBadHeader, err, "%s: %v", fr.key, err)
		}
		*fr.dst = f
	}
	if pv, ok := v.Get(fieldSenderPub); ok {
		pub, err := base64.StdEncoding.Strict().DecodeString(pv.Str())
		if pv.Kind() != canon.String || err != nil || len(pub) != ed25519.PublicKeySize {
			return bad(ErrBadHeader, nil, "%s must be the standard base64 of a %d-byte Ed25519 public key", fieldSenderPub, ed25519.PublicKeySize)
		}
		if id := bplog.KeyID(pub); id != h.SenderKeyID {
			return bad(ErrBadHeader, nil, "%s is the key %s, not sender_key_id %s", fieldSenderPub, id, h.SenderKeyID)
		}
		h.SenderPublicKey = pub
	}
	if fv, ok := v.Get(fieldFiles); ok {
		if !h.Full() {
			return bad(ErrBadHeader, nil, "files is carried only by a full export (empty basis_frontier)")
		}
		if h.Files, ferr = parseFiles(fv, lim); ferr != nil {
			return nil, ferr
		}
	}
	canonical, err := canon.Encode(v)
	if err != nil {
		return bad(ErrNotCanonical, err, "cannot be canonicalised: %v", err)
	}
	if !bytes.Equal(canonical, line) {
		return bad(ErrNotCanonical, nil, "the header is not in canonical form")
	}
	if b.signed, err = canon.Encode(v.Without(fieldSig)); err != nil {
		return bad(ErrNotCanonical, err, "cannot be canonicalised: %v", err)
	}
	return b, nil
}
