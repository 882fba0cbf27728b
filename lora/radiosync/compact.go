package radiosync

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

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
	batchVersion  = 0x02
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
	prevBatch    = 0x30 // no bytes: the newest earlier event of the actor in the batch
	prevMask     = 0x30

	flagVerbatim = 0x40 // the residual is the whole line, byte for byte
	// flagPredKey: no key bytes; actor_key_id is the predecessor's (with
	// prevRef or prevBatch, which name an event the receiver has).
	flagPredKey = 0x80
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
	return canon.Encode(e.Value.Without("event_id", "sig", "actor_key_id", "prev_event_hash", "timestamp_utc"))
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
	// KeyOf returns the actor_key_id of an event Holds says the receiver
	// holds, so that an event signed with its predecessor's key need not
	// carry it (nil: only for predecessors in the batch).
	KeyOf func(id string) string
}

// Encode returns the compact batch of lines (canonical event lines, one
// event each, no newline). Lines that are not events, or whose compact
// form would not re-materialise byte for byte, travel verbatim.
func (c *Codec) Encode(lines [][]byte, opts EncodeOptions) ([]byte, error) {
	if len(lines) > MaxBatchEvents {
		return nil, fmt.Errorf("radiosync: %d events in one batch (at most %d)", len(lines), MaxBatchEvents)
	}
	raw := binary.AppendUvarint(nil, uint64(len(lines)))
	var bins []byte // the records' binary fields, sent after the zstd frame
	var batch []batchEvent
	for _, line := range lines {
		rec, bin, ev := encodeRecord(line, batch, opts)
		// Check that the receiver gets the same bytes back (it resolves
		// references the same way, against the same earlier events).
		got, _, _, ts, err := decodeRecord(rec, bin, batch, func(actor string, p []byte) (string, string) {
			if ev == nil || !ev.HasPrev || !strings.HasPrefix(ev.Prev[len(bplog.IDPrefix):], hex.EncodeToString(p)) {
				return "", ""
			}
			if opts.KeyOf != nil {
				return ev.Prev, opts.KeyOf(ev.Prev)
			}
			return ev.Prev, ""
		})
		if err != nil || !bytes.Equal(got, line) {
			rec, bin = verbatimRecord(line), nil
			ev = nil
		}
		raw = append(raw, rec...)
		bins = append(bins, bin...)
		if ev != nil {
			batch = append(batch, batchEvent{actor: ev.Actor, id: ev.ID, key: ev.KeyID, ts: ts, hasTS: ts != noTS})
		} else if e, err := bplog.Parse(line); err == nil {
			batch = append(batch, batchEvent{actor: e.Actor, id: e.ID, key: e.KeyID})
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
	out = binary.AppendUvarint(out, uint64(len(z)-zstdMagicSize))
	out = append(out, z[zstdMagicSize:]...)
	return append(out, bins...), nil
}

func appendCut(b []byte, cut []CutEntry) []byte {
	b = binary.AppendUvarint(b, uint64(len(cut)))
	for _, c := range cut {
		b = append(b, c.Actor[:]...)
		b = binary.AppendUvarint(b, c.Count)
	}
	return b
}

// batchEvent is what a later record of the batch may refer to: its
// actor, id and key, and its timestamp in microseconds when the record
// carried it in binary (the base of the next binary timestamp).
type batchEvent struct {
	actor, id, key string
	ts             int64
	hasTS          bool
}

// tsBase is the timestamp the next binary timestamp of the batch is
// relative to (ok false: none yet, the next one is absolute).
func tsBase(batch []batchEvent) (int64, bool) {
	for j := len(batch) - 1; j >= 0; j-- {
		if batch[j].hasTS {
			return batch[j].ts, true
		}
	}
	return 0, false
}

// Timestamp layouts a record can carry in binary (kind 1-6): digits of
// the fraction of a second (6, none or 3) and the zone suffix.
var tsLayouts = [...]struct {
	frac int
	zone string
}{{6, "+00:00"}, {0, "+00:00"}, {3, "+00:00"}, {6, "Z"}, {0, "Z"}, {3, "Z"}}

// parseTS reads a timestamp_utc in one of tsLayouts, in microseconds
// since the Unix epoch, and the kind (1-based) that gives it back
// exactly; ok false for anything else.
func parseTS(s string) (int64, byte, bool) {
	if len(s) < 20 {
		return 0, 0, false
	}
	t, err := time.Parse("2006-01-02T15:04:05", s[:19])
	if err != nil {
		return 0, 0, false
	}
	for k, l := range tsLayouts {
		rest := s[19:]
		us := int64(0)
		if l.frac > 0 {
			if len(rest) < 1+l.frac || rest[0] != '.' {
				continue
			}
			f, err := strconv.ParseUint(rest[1:1+l.frac], 10, 32)
			if err != nil {
				continue
			}
			us = int64(f)
			if l.frac == 3 {
				us *= 1000
			}
			rest = rest[1+l.frac:]
		}
		if rest != l.zone {
			continue
		}
		v := t.Unix()*1e6 + us
		if formatTS(v, byte(k+1)) == s {
			return v, byte(k + 1), true
		}
	}
	return 0, 0, false
}

// formatTS writes microseconds since the epoch in layout kind.
func formatTS(us int64, kind byte) string {
	l := tsLayouts[kind-1]
	t := time.Unix(us/1e6, 0).UTC()
	frac := us % 1e6
	if frac < 0 {
		t, frac = t.Add(-time.Second), frac+1e6
	}
	s := t.Format("2006-01-02T15:04:05")
	switch l.frac {
	case 6:
		s += fmt.Sprintf(".%06d", frac)
	case 3:
		s += fmt.Sprintf(".%03d", frac/1000)
	}
	return s + l.zone
}

// verbatimRecord is the record of a line that travels as it is (no
// binary fields).
func verbatimRecord(line []byte) []byte {
	rec := []byte{flagVerbatim}
	rec = binary.AppendUvarint(rec, uint64(len(line)))
	return append(rec, line...)
}

// encodeRecord returns the compact record of line (its compressed part
// and its binary fields) and its parsed event (nil when the line travels
// verbatim).
func encodeRecord(line []byte, batch []batchEvent, opts EncodeOptions) ([]byte, []byte, *bplog.Event) {
	e, err := bplog.Parse(line)
	if err != nil {
		return verbatimRecord(line), nil, nil
	}
	v := e.Value
	var flags byte
	var bin []byte
	rule, _, err := e.CheckID()
	switch {
	case err != nil:
		return verbatimRecord(line), nil, nil
	case rule == bplog.IDProfile:
		flags |= idProfile
		v = v.Without("event_id")
	case rule == bplog.IDLegacy:
		flags |= idLegacy
		v = v.Without("event_id")
	default:
		flags |= idResidual
	}
	// The predecessor first: its key may stand for the event's.
	var prevBin []byte
	predKey := ""
	if pb, ok := idBytes(e.Prev); e.HasPrev && ok {
		last := lastOfActor(e.Actor, batch)
		switch {
		case last != nil && last.id == e.Prev:
			flags |= prevBatch
			predKey = last.key
		case refOK(e.Actor, e.Prev, batch, opts.Holds):
			flags |= prevRef
			prevBin = pb[:prefixLen]
			if b := inBatch(e.Actor, e.Prev, batch); b != nil {
				predKey = b.key
			} else if opts.KeyOf != nil {
				predKey = opts.KeyOf(e.Prev)
			}
		default:
			flags |= prevFull
			prevBin = pb
		}
		v = v.Without("prev_event_hash")
	}
	if kb, ok := keyBytes(e.KeyID); ok && v.Field("actor_key_id").Kind() == canon.String {
		if predKey == e.KeyID {
			flags |= flagPredKey
		} else {
			flags |= flagKey
			bin = append(bin, kb...)
		}
		v = v.Without("actor_key_id")
	}
	bin = append(bin, prevBin...)
	if sb, ok := sigBytes(e.Sig); ok && v.Field("sig").Kind() == canon.String {
		flags |= flagSig
		bin = append(bin, sb...)
		v = v.Without("sig")
	}
	// The timestamp: one uvarint, 0 when it stays in the residual, else
	// the difference from the batch's previous binary timestamp (from 0
	// for the first) zigzag-encoded, shifted left by 4, or 8 when it is in
	// whole milliseconds and counted in them, or its layout kind.
	ts := []byte{0}
	if f := v.Field("timestamp_utc"); f.Kind() == canon.String {
		if us, kind, ok := parseTS(f.Str()); ok {
			base, _ := tsBase(batch)
			d, unit := us-base, uint64(0)
			if d%1000 == 0 {
				d, unit = d/1000, 8
			}
			z := uint64(d<<1) ^ uint64(d>>63)
			if z < 1<<59 {
				ts = binary.AppendUvarint(nil, z<<4|unit|uint64(kind))
				v = v.Without("timestamp_utc")
			}
		}
	}
	res, err := canon.Encode(v)
	if err != nil {
		return verbatimRecord(line), nil, nil
	}
	rec := append([]byte{flags}, ts...)
	return append(rec, res...), bin, e
}

// refOK reports whether a 4-byte reference to prev resolves at the
// receiver without ambiguity among the batch's earlier events of actor.
func refOK(actor, prev string, batch []batchEvent, holds func(actor, id string) bool) bool {
	if len(prev) < len(bplog.IDPrefix)+2*prefixLen {
		return false
	}
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

// lastOfActor is the newest event of actor earlier in the batch (nil:
// none).
func lastOfActor(actor string, batch []batchEvent) *batchEvent {
	for j := len(batch) - 1; j >= 0; j-- {
		if batch[j].actor == actor {
			return &batch[j]
		}
	}
	return nil
}

// inBatch is the event id of actor earlier in the batch (nil: none).
func inBatch(actor, id string, batch []batchEvent) *batchEvent {
	for j := len(batch) - 1; j >= 0; j-- {
		if batch[j].actor == actor && batch[j].id == id {
			return &batch[j]
		}
	}
	return nil
}

// Resolver finds the receiver's event of actor whose event_id starts with
// "evt_" + hex(prefix), and returns its id and actor_key_id; "" when it
// holds none.
type Resolver func(actor string, prefix []byte) (id, keyID string)

// BatchHeader is the part of a batch before the compressed records.
type BatchHeader struct {
	HasDict bool
	Cut     []CutEntry
	DictID  [4]byte
	z, bins []byte // the zstd frame (without its magic) and the binary fields
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
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, badf("bad compressed length")
	}
	h.z, h.bins = p[k:k+int(n)], p[k+int(n):]
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
	frame := make([]byte, 0, zstdMagicSize+len(h.z))
	frame = append(append(frame, zstdMagic...), h.z...)
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
	bins := h.bins
	for range n {
		line, used, usedBin, ts, err := decodeRecord(raw, bins, batch, resolve)
		if err != nil {
			return nil, err
		}
		raw, bins = raw[used:], bins[usedBin:]
		lines = append(lines, line)
		be := batchEvent{ts: ts, hasTS: ts != noTS}
		if e, err := bplog.Parse(line); err == nil {
			be.actor, be.id, be.key = e.Actor, e.ID, e.KeyID
		}
		batch = append(batch, be)
	}
	if len(raw) != 0 || len(bins) != 0 {
		return nil, badf("%d and %d bytes after the last record", len(raw), len(bins))
	}
	return lines, nil
}

// decodeRecord re-materialises one record at the start of p and returns
// the line and the record's length.
// noTS marks a record without a binary timestamp.
const noTS = math.MinInt64

func decodeRecord(p, bin []byte, batch []batchEvent, resolve Resolver) ([]byte, int, int, int64, error) {
	if len(p) < 1 {
		return nil, 0, 0, noTS, badf("short record")
	}
	flags := p[0]
	predKey := flags&flagPredKey != 0
	if flags&idMask == 3 || (predKey && (flags&flagKey != 0 || flags&prevMask == prevFull || flags&prevMask == prevResidual)) {
		return nil, 0, 0, noTS, badf("unknown record flags %#x", flags)
	}
	i := 1
	j := 0 // into bin
	take := func(n int) ([]byte, error) {
		if len(bin)-j < n {
			return nil, badf("short binary fields")
		}
		b := bin[j : j+n]
		j += n
		return b, nil
	}
	if flags&flagVerbatim != 0 {
		if flags != flagVerbatim {
			return nil, 0, 0, noTS, badf("unknown record flags %#x", flags)
		}
		n, k := binary.Uvarint(p[i:])
		if k <= 0 || n > bplog.MaxLineSize || n > uint64(len(p)-i-k) {
			return nil, 0, 0, noTS, badf("bad verbatim length")
		}
		i += k
		return append([]byte(nil), p[i:i+int(n)]...), i + int(n), 0, noTS, nil
	}
	var key, prev, sig []byte
	var err error
	tv, k := binary.Uvarint(p[i:])
	if k <= 0 {
		return nil, 0, 0, noTS, badf("bad timestamp")
	}
	i += k
	kind := [1]byte{byte(tv & 7)}
	ts := int64(noTS)
	if kind[0] != 0 {
		if int(kind[0]) > len(tsLayouts) {
			return nil, 0, 0, noTS, badf("unknown timestamp kind %d", kind[0])
		}
		z := tv >> 4
		d := int64(z>>1) ^ -int64(z&1) // |d| < 2^59
		if tv&8 != 0 {
			if d > 1<<48 || d < -(1<<48) {
				return nil, 0, 0, noTS, badf("timestamp out of range")
			}
			d *= 1000
		}
		base, _ := tsBase(batch) // years 1-9999: no overflow below
		ts = base + d
		if ts < -62135596800e6 || ts > 253402300799e6 { // years 1-9999
			return nil, 0, 0, noTS, badf("timestamp out of range")
		}
	}
	if flags&flagKey != 0 {
		if key, err = take(8); err != nil {
			return nil, 0, 0, noTS, err
		}
	}
	switch flags & prevMask {
	case prevFull:
		prev, err = take(12)
	case prevRef:
		prev, err = take(prefixLen)
	}
	if err != nil {
		return nil, 0, 0, noTS, err
	}
	if flags&flagSig != 0 {
		if sig, err = take(64); err != nil {
			return nil, 0, 0, noTS, err
		}
	}
	n := objectEnd(p[i:min(len(p), i+MaxResidual)])
	if n < 0 {
		return nil, 0, 0, noTS, badf("residual is not a JSON object of at most %d bytes", MaxResidual)
	}
	v, err := canon.Limits{MaxSize: MaxResidual, MaxDepth: bplog.MaxDepth}.Parse(p[i : i+n])
	if err != nil {
		return nil, 0, 0, noTS, badf("residual: %v", err)
	}
	i += n
	if v.Kind() != canon.Object {
		return nil, 0, 0, noTS, badf("residual is not an object")
	}
	for _, m := range []string{"actor_key_id", "prev_event_hash", "sig", "event_id", "timestamp_utc"} {
		if !v.Has(m) {
			continue
		}
		carried := (m == "actor_key_id" && (key != nil || predKey)) || (m == "prev_event_hash" && (prev != nil || flags&prevMask == prevBatch)) ||
			(m == "sig" && sig != nil) || (m == "event_id" && flags&idMask != idResidual) ||
			(m == "timestamp_utc" && kind[0] != 0)
		if carried {
			return nil, 0, 0, noTS, badf("%s both in binary and in the residual", m)
		}
	}
	if key != nil {
		v = v.With("actor_key_id", canon.StringValue(bplog.KeyIDPrefix+hex.EncodeToString(key)))
	}
	var prevID, prevKey string
	switch flags & prevMask {
	case prevFull:
		prevID = bplog.IDPrefix + hex.EncodeToString(prev)
	case prevRef:
		prevID, prevKey = resolveRef(v.Field("actor").Str(), prev, batch, resolve)
		if prevID == "" {
			return nil, 0, 0, noTS, badf("prev_event_hash %x… names no event the receiver holds", prev)
		}
	case prevBatch:
		last := lastOfActor(v.Field("actor").Str(), batch)
		if last == nil || last.id == "" {
			return nil, 0, 0, noTS, badf("prev_event_hash names an earlier event of the batch, and there is none")
		}
		prevID, prevKey = last.id, last.key
	}
	if prevID != "" {
		v = v.With("prev_event_hash", canon.StringValue(prevID))
	}
	if kind[0] != 0 {
		v = v.With("timestamp_utc", canon.StringValue(formatTS(ts, kind[0])))
	}
	if predKey {
		if prevKey == "" {
			return nil, 0, 0, noTS, badf("actor_key_id is the predecessor's, whose key is not known")
		}
		v = v.With("actor_key_id", canon.StringValue(prevKey))
	}
	switch flags & idMask {
	case idProfile, idLegacy:
		compute := bplog.ComputeID
		if flags&idMask == idLegacy {
			compute = bplog.ComputeLegacyID
		}
		id, err := compute(v)
		if err != nil {
			return nil, 0, 0, noTS, badf("event_id: %v", err)
		}
		v = v.With("event_id", canon.StringValue(id))
	}
	if sig != nil {
		v = v.With("sig", canon.StringValue(base64.StdEncoding.EncodeToString(sig)))
	}
	line, err := canon.Encode(v)
	if err != nil {
		return nil, 0, 0, noTS, badf("encode: %v", err)
	}
	return line, i, j, ts, nil
}

// objectEnd returns the length of the JSON object at the start of p (up
// to its closing brace), or -1 when p does not start with one that ends
// within p. It only matches braces outside strings; the parser checks
// the rest.
func objectEnd(p []byte) int {
	if len(p) == 0 || p[0] != '{' {
		return -1
	}
	depth, inStr, esc := 0, false, false
	for i, c := range p {
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

func resolveRef(actor string, prefix []byte, batch []batchEvent, resolve Resolver) (id, key string) {
	pfx := bplog.IDPrefix + hex.EncodeToString(prefix)
	for j := len(batch) - 1; j >= 0; j-- {
		if batch[j].actor == actor && strings.HasPrefix(batch[j].id, pfx) {
			return batch[j].id, batch[j].key
		}
	}
	if resolve != nil {
		return resolve(actor, prefix)
	}
	return "", ""
}
