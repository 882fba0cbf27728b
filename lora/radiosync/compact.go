package radiosync

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/klauspost/compress/zstd"
)

// Limits of the compact batch decoder. A batch that exceeds one is
// refused as a whole (ErrBadBatch); nothing of it is ingested.
const (
	// MaxBatchEvents bounds the events of one batch.
	MaxBatchEvents = 1024
	// MaxBatchRaw bounds the decompressed records of one batch.
	MaxBatchRaw = 1 << 20
	// MaxResidual bounds one record's residual JSON.
	MaxResidual = 256 << 10
	// MaxDictSize is the size of the raw dictionary cut from the shared
	// log (the newest residuals of the events both ends hold).
	MaxDictSize = 100 << 10
	// maxCut bounds the actors a dictionary cut names.
	maxCut = 4096
)

// ErrBadBatch matches every compact batch that does not decode.
var ErrBadBatch = errors.New("radiosync: bad compact batch")

// ErrUnknownDict is returned (wrapped in ErrBadBatch) when a batch was
// compressed with a dictionary the receiver cannot rebuild; the sender
// should send it again without one.
var ErrUnknownDict = errors.New("radiosync: batch dictionary not held")

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadBatch, fmt.Sprintf(format, a...))
}

// Batch header byte.
const (
	batchVersion  = 0x01
	batchHasDict  = 0x80
	batchVerMask  = 0x0f
	zstdMagicSize = 4
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Record flag bits.
const (
	idProfile  = 0 // event_id recomputed by the profile rule
	idLegacy   = 1 // event_id recomputed by the legacy rule
	idResidual = 2 // event_id kept in the residual
	idMask     = 0x03

	flagSig = 0x04 // 64 raw signature bytes follow
	flagKey = 0x08 // 8 raw key id bytes follow

	prevResidual = 0x00 // prev_event_hash absent, null or unusual: in the residual
	prevFull     = 0x10 // 12 raw bytes
	prevRef      = 0x20 // 4-byte prefix the receiver resolves
	prevMask     = 0x30

	flagVerbatim = 0x40 // the residual is the whole line, byte for byte
)

const prefixLen = 4

// CutEntry is one actor of a dictionary cut: the dictionary is made of the
// actor's first Count events (in chain order), for every actor of the cut.
type CutEntry struct {
	Actor [4]byte // ActorHash of the label
	Count uint64
}

// ActorHash is the 4-byte name of an actor label on the air.
func ActorHash(actor string) [4]byte {
	s := sha256.Sum256([]byte(actor))
	return [4]byte(s[:4])
}

// Dict is a raw zstd dictionary both ends of a link can rebuild from
// their logs: the residuals of the events inside Cut, one per line,
// newest by (timestamp_utc, event_id) last, then the distinct binary key
// ids of those events in byte order, trimmed from the front to
// MaxDictSize.
type Dict struct {
	Cut  []CutEntry
	Data []byte
	ID   [4]byte // SHA-256 of Data, first 4 bytes: both ends check it

	enc *zstd.Encoder
	dec *zstd.Decoder
}

// BuildDict makes the dictionary for cut from events (any order; each
// actor's events in chain order). It returns nil when events lack part of
// the cut.
func BuildDict(events []*bplog.Event, cut []CutEntry) *Dict {
	want := map[[4]byte]uint64{}
	for _, c := range cut {
		want[c.Actor] = c.Count
	}
	taken := map[[4]byte]uint64{}
	var in []*bplog.Event
	for _, e := range events {
		h := ActorHash(e.Actor)
		if taken[h] < want[h] {
			taken[h]++
			in = append(in, e)
		}
	}
	for a, n := range want {
		if taken[a] != n {
			return nil
		}
	}
	sort.Slice(in, func(i, j int) bool {
		return bplog.CompareKey(in[i].Item(), in[j].Item()) < 0
	})
	var parts [][]byte
	size := 0
	for i := len(in) - 1; i >= 0 && size < MaxDictSize; i-- {
		r, err := residual(in[i])
		if err != nil {
			continue
		}
		parts = append(parts, r)
		size += len(r) + 1
	}
	data := make([]byte, 0, size)
	for i := len(parts) - 1; i >= 0; i-- {
		data = append(data, parts[i]...)
		data = append(data, '\n')
	}
	// The binary key ids of the cut's signers go last, where matches are
	// cheapest: a lone event then pays a match, not 8 bytes, for its key.
	var keys []string
	seen := map[string]bool{}
	for _, e := range in {
		if kb, ok := keyBytes(e.KeyID); ok && !seen[e.KeyID] {
			seen[e.KeyID] = true
			keys = append(keys, string(kb))
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		data = append(data, k...)
	}
	if len(data) > MaxDictSize {
		data = data[len(data)-MaxDictSize:]
	}
	sum := sha256.Sum256(data)
	return &Dict{Cut: append([]CutEntry(nil), cut...), Data: data, ID: [4]byte(sum[:4])}
}

// residual is the canonical JSON of e without the members a record
// carries in binary or the receiver recomputes.
func residual(e *bplog.Event) ([]byte, error) {
	return canon.Encode(e.Value.Without("event_id", "sig", "actor_key_id", "prev_event_hash"))
}

// Codec compresses and decompresses compact batches. It caches zstd
// coders (one pair per dictionary). A Codec is not safe for concurrent
// use; it starts no goroutines.
type Codec struct {
	plainEnc *zstd.Encoder
	plainDec *zstd.Decoder
}

func (c *Codec) encoder(d *Dict) (*zstd.Encoder, error) {
	opts := []zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
		zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(1 << 17)}
	if d == nil {
		if c.plainEnc == nil {
			e, err := zstd.NewWriter(nil, opts...)
			if err != nil {
				return nil, err
			}
			c.plainEnc = e
		}
		return c.plainEnc, nil
	}
	if d.enc == nil {
		e, err := zstd.NewWriter(nil, append(opts, zstd.WithEncoderDictRaw(0, d.Data))...)
		if err != nil {
			return nil, err
		}
		d.enc = e
	}
	return d.enc, nil
}

func (c *Codec) decoder(d *Dict) (*zstd.Decoder, error) {
	opts := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxBatchRaw),
		zstd.WithDecoderMaxWindow(1 << 20)}
	if d == nil {
		if c.plainDec == nil {
			x, err := zstd.NewReader(nil, opts...)
			if err != nil {
				return nil, err
			}
			c.plainDec = x
		}
		return c.plainDec, nil
	}
	if d.dec == nil {
		x, err := zstd.NewReader(nil, append(opts, zstd.WithDecoderDictRaw(0, d.Data))...)
		if err != nil {
			return nil, err
		}
		d.dec = x
	}
	return d.dec, nil
}

// EncodeOptions say what the receiver is known to hold.
type EncodeOptions struct {
	// Dict compresses with a dictionary the receiver holds (nil: none).
	Dict *Dict
	// Holds reports whether the receiver holds event id of actor, so that
	// a prev_event_hash naming it can travel as a 4-byte reference. Events
	// earlier in the same batch count as held without asking.
	Holds func(actor, id string) bool
}

// Encode returns the compact batch of lines (canonical event lines, one
// event each, no newline). Lines that are not events, or whose compact
// form would not re-materialise byte for byte, travel verbatim.
func (c *Codec) Encode(lines [][]byte, opts EncodeOptions) ([]byte, error) {
	if len(lines) > MaxBatchEvents {
		return nil, fmt.Errorf("radiosync: %d events in one batch (at most %d)", len(lines), MaxBatchEvents)
	}
	raw := binary.AppendUvarint(nil, uint64(len(lines)))
	var batch []batchEvent
	for _, line := range lines {
		rec, ev := encodeRecord(line, batch, opts.Holds)
		// Check that the receiver gets the same bytes back (it resolves
		// references the same way, against the same earlier events).
		got, _, err := decodeRecord(rec, batch, func(actor string, p []byte) string {
			if ev != nil && ev.HasPrev && strings.HasPrefix(ev.Prev[len(bplog.IDPrefix):], hex.EncodeToString(p)) {
				return ev.Prev
			}
			return ""
		})
		if err != nil || !bytes.Equal(got, line) {
			rec = verbatimRecord(line)
			ev = nil
		}
		raw = append(raw, rec...)
		if ev != nil {
			batch = append(batch, batchEvent{actor: ev.Actor, id: ev.ID})
		} else if e, err := bplog.Parse(line); err == nil {
			batch = append(batch, batchEvent{actor: e.Actor, id: e.ID})
		} else {
			batch = append(batch, batchEvent{})
		}
	}
	if len(raw) > MaxBatchRaw {
		return nil, fmt.Errorf("radiosync: batch of %d bytes before compression (at most %d)", len(raw), MaxBatchRaw)
	}
	enc, err := c.encoder(opts.Dict)
	if err != nil {
		return nil, err
	}
	out := []byte{batchVersion}
	if d := opts.Dict; d != nil {
		out[0] |= batchHasDict
		out = appendCut(out, d.Cut)
		out = append(out, d.ID[:]...)
	}
	z := enc.EncodeAll(raw, nil)
	if !bytes.HasPrefix(z, zstdMagic) {
		return nil, errors.New("bug: zstd frame without magic")
	}
	return append(out, z[zstdMagicSize:]...), nil
}

func appendCut(b []byte, cut []CutEntry) []byte {
	b = binary.AppendUvarint(b, uint64(len(cut)))
	for _, c := range cut {
		b = append(b, c.Actor[:]...)
		b = binary.AppendUvarint(b, c.Count)
	}
	return b
}

// batchEvent is what a later record of the batch may refer to.
type batchEvent struct{ actor, id string }

func verbatimRecord(line []byte) []byte {
	rec := []byte{flagVerbatim}
	rec = binary.AppendUvarint(rec, uint64(len(line)))
	return append(rec, line...)
}

// encodeRecord returns the compact record of line and its parsed event
// (nil when the line travels verbatim).
func encodeRecord(line []byte, batch []batchEvent, holds func(actor, id string) bool) ([]byte, *bplog.Event) {
	e, err := bplog.Parse(line)
	if err != nil {
		return verbatimRecord(line), nil
	}
	v := e.Value
	var flags byte
	var bin []byte
	rule, _, err := e.CheckID()
	switch {
	case err != nil:
		return verbatimRecord(line), nil
	case rule == bplog.IDProfile:
		flags |= idProfile
		v = v.Without("event_id")
	case rule == bplog.IDLegacy:
		flags |= idLegacy
		v = v.Without("event_id")
	default:
		flags |= idResidual
	}
	if kb, ok := keyBytes(e.KeyID); ok && v.Field("actor_key_id").Kind() == canon.String {
		flags |= flagKey
		bin = append(bin, kb...)
		v = v.Without("actor_key_id")
	}
	if pb, ok := idBytes(e.Prev); e.HasPrev && ok {
		if refOK(e.Actor, e.Prev, batch, holds) {
			flags |= prevRef
			bin = append(bin, pb[:prefixLen]...)
		} else {
			flags |= prevFull
			bin = append(bin, pb...)
		}
		v = v.Without("prev_event_hash")
	}
	if sb, ok := sigBytes(e.Sig); ok && v.Field("sig").Kind() == canon.String {
		flags |= flagSig
		bin = append(bin, sb...)
		v = v.Without("sig")
	}
	res, err := canon.Encode(v)
	if err != nil {
		return verbatimRecord(line), nil
	}
	rec := append([]byte{flags}, bin...)
	rec = binary.AppendUvarint(rec, uint64(len(res)))
	return append(rec, res...), e
}

// refOK reports whether a 4-byte reference to prev resolves at the
// receiver without ambiguity among the batch's earlier events of actor.
func refOK(actor, prev string, batch []batchEvent, holds func(actor, id string) bool) bool {
	pfx := prev[:len(bplog.IDPrefix)+2*prefixLen]
	found := false
	for _, b := range batch {
		if b.actor != actor || !strings.HasPrefix(b.id, pfx) {
			continue
		}
		if b.id != prev {
			return false // another event of the batch has the prefix
		}
		found = true
	}
	return found || (holds != nil && holds(actor, prev))
}

func keyBytes(id string) ([]byte, bool) {
	if !strings.HasPrefix(id, bplog.KeyIDPrefix) {
		return nil, false
	}
	return lowerHex(id[len(bplog.KeyIDPrefix):], 8)
}

func idBytes(id string) ([]byte, bool) {
	if !strings.HasPrefix(id, bplog.IDPrefix) {
		return nil, false
	}
	return lowerHex(id[len(bplog.IDPrefix):], 12)
}

// lowerHex decodes s when it is exactly n bytes of lower-case hex (so
// that hex.EncodeToString gives s back).
func lowerHex(s string, n int) ([]byte, bool) {
	if len(s) != 2*n || strings.ToLower(s) != s {
		return nil, false
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

func sigBytes(sig string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(b) != 64 || base64.StdEncoding.EncodeToString(b) != sig {
		return nil, false
	}
	return b, true
}

// Resolver finds the receiver's event of actor whose event_id starts with
// "evt_" + hex(prefix); "" when it holds none.
type Resolver func(actor string, prefix []byte) string

// BatchHeader is the part of a batch before the compressed records.
type BatchHeader struct {
	HasDict bool
	Cut     []CutEntry
	DictID  [4]byte
	body    []byte
}

// ParseBatchHeader reads a batch's header, so that the receiver can build
// the dictionary it names before decoding.
func ParseBatchHeader(blob []byte) (*BatchHeader, error) {
	if len(blob) < 1 || blob[0]&batchVerMask != batchVersion || blob[0]&^(batchVerMask|batchHasDict) != 0 {
		return nil, badf("unknown batch version")
	}
	h := &BatchHeader{HasDict: blob[0]&batchHasDict != 0}
	p := blob[1:]
	if h.HasDict {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > maxCut {
			return nil, badf("bad dictionary cut")
		}
		p = p[k:]
		for range n {
			if len(p) < 4 {
				return nil, badf("short dictionary cut")
			}
			var c CutEntry
			c.Actor = [4]byte(p[:4])
			cnt, k := binary.Uvarint(p[4:])
			if k <= 0 {
				return nil, badf("bad dictionary cut")
			}
			c.Count = cnt
			h.Cut = append(h.Cut, c)
			p = p[4+k:]
		}
		if len(p) < 4 {
			return nil, badf("short dictionary id")
		}
		h.DictID = [4]byte(p[:4])
		p = p[4:]
	}
	h.body = p
	return h, nil
}

// Decode re-materialises the canonical lines of a batch. dict must be the
// dictionary the header names (nil when it names none); resolve finds
// events the sender referred to by prefix (nil: only the batch's own).
func (c *Codec) Decode(h *BatchHeader, dict *Dict, resolve Resolver) ([][]byte, error) {
	if h.HasDict && (dict == nil || dict.ID != h.DictID) {
		return nil, fmt.Errorf("%w: %w", ErrBadBatch, ErrUnknownDict)
	}
	if !h.HasDict {
		dict = nil
	}
	dec, err := c.decoder(dict)
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 0, zstdMagicSize+len(h.body))
	frame = append(append(frame, zstdMagic...), h.body...)
	raw, err := dec.DecodeAll(frame, nil)
	if err != nil {
		return nil, badf("zstd: %v", err)
	}
	if len(raw) > MaxBatchRaw {
		return nil, badf("records larger than %d bytes", MaxBatchRaw)
	}
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > MaxBatchEvents {
		return nil, badf("bad event count")
	}
	raw = raw[k:]
	lines := make([][]byte, 0, n)
	var batch []batchEvent
	for range n {
		line, used, err := decodeRecord(raw, batch, resolve)
		if err != nil {
			return nil, err
		}
		raw = raw[used:]
		lines = append(lines, line)
		be := batchEvent{}
		if e, err := bplog.Parse(line); err == nil {
			be = batchEvent{actor: e.Actor, id: e.ID}
		}
		batch = append(batch, be)
	}
	if len(raw) != 0 {
		return nil, badf("%d bytes after the last record", len(raw))
	}
	return lines, nil
}

// decodeRecord re-materialises one record at the start of p and returns
// the line and the record's length.
func decodeRecord(p []byte, batch []batchEvent, resolve Resolver) ([]byte, int, error) {
	if len(p) < 1 {
		return nil, 0, badf("short record")
	}
	flags := p[0]
	if flags&0x80 != 0 || flags&idMask == 3 || flags&prevMask == prevMask {
		return nil, 0, badf("unknown record flags %#x", flags)
	}
	i := 1
	take := func(n int) ([]byte, error) {
		if len(p)-i < n {
			return nil, badf("short record")
		}
		b := p[i : i+n]
		i += n
		return b, nil
	}
	if flags&flagVerbatim != 0 {
		if flags != flagVerbatim {
			return nil, 0, badf("unknown record flags %#x", flags)
		}
		n, k := binary.Uvarint(p[i:])
		if k <= 0 || n > bplog.MaxLineSize || n > uint64(len(p)-i-k) {
			return nil, 0, badf("bad verbatim length")
		}
		i += k
		return append([]byte(nil), p[i:i+int(n)]...), i + int(n), nil
	}
	var key, prev, sig []byte
	var err error
	if flags&flagKey != 0 {
		if key, err = take(8); err != nil {
			return nil, 0, err
		}
	}
	switch flags & prevMask {
	case prevFull:
		prev, err = take(12)
	case prevRef:
		prev, err = take(prefixLen)
	}
	if err != nil {
		return nil, 0, err
	}
	if flags&flagSig != 0 {
		if sig, err = take(64); err != nil {
			return nil, 0, err
		}
	}
	n, k := binary.Uvarint(p[i:])
	if k <= 0 || n > MaxResidual || n > uint64(len(p)-i-k) {
		return nil, 0, badf("bad residual length")
	}
	i += k
	v, err := canon.Limits{MaxSize: MaxResidual, MaxDepth: bplog.MaxDepth}.Parse(p[i : i+int(n)])
	if err != nil {
		return nil, 0, badf("residual: %v", err)
	}
	i += int(n)
	if v.Kind() != canon.Object {
		return nil, 0, badf("residual is not an object")
	}
	for _, m := range []string{"actor_key_id", "prev_event_hash", "sig", "event_id"} {
		if !v.Has(m) {
			continue
		}
		carried := (m == "actor_key_id" && key != nil) || (m == "prev_event_hash" && prev != nil) ||
			(m == "sig" && sig != nil) || (m == "event_id" && flags&idMask != idResidual)
		if carried {
			return nil, 0, badf("%s both in binary and in the residual", m)
		}
	}
	if key != nil {
		v = v.With("actor_key_id", canon.StringValue(bplog.KeyIDPrefix+hex.EncodeToString(key)))
	}
	if prev != nil {
		id := bplog.IDPrefix + hex.EncodeToString(prev)
		if len(prev) == prefixLen {
			id = resolveRef(v.Field("actor").Str(), prev, batch, resolve)
			if id == "" {
				return nil, 0, badf("prev_event_hash %x… names no event the receiver holds", prev)
			}
		}
		v = v.With("prev_event_hash", canon.StringValue(id))
	}
	switch flags & idMask {
	case idProfile, idLegacy:
		compute := bplog.ComputeID
		if flags&idMask == idLegacy {
			compute = bplog.ComputeLegacyID
		}
		id, err := compute(v)
		if err != nil {
			return nil, 0, badf("event_id: %v", err)
		}
		v = v.With("event_id", canon.StringValue(id))
	}
	if sig != nil {
		v = v.With("sig", canon.StringValue(base64.StdEncoding.EncodeToString(sig)))
	}
	line, err := canon.Encode(v)
	if err != nil {
		return nil, 0, badf("encode: %v", err)
	}
	return line, i, nil
}

func resolveRef(actor string, prefix []byte, batch []batchEvent, resolve Resolver) string {
	pfx := bplog.IDPrefix + hex.EncodeToString(prefix)
	for j := len(batch) - 1; j >= 0; j-- {
		if batch[j].actor == actor && strings.HasPrefix(batch[j].id, pfx) {
			return batch[j].id
		}
	}
	if resolve != nil {
		return resolve(actor, prefix)
	}
	return ""
}
