package bundles_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// rawOptions build bundles that Encode refuses to write.
type rawOptions struct {
	signer       int                    // test key that signs the header
	sender       string                 // sender_key_id ("" = the signer's id)
	set          map[string]canon.Value // header members to set (or add)
	setAfterSign bool                   // set them after signing
	tamper       map[string]canon.Value // header members set after signing, besides set
	drop         []string               // header members to remove
	content      []byte                 // event section (nil = the events joined)
	hashOver     []byte                 // what content_sha256 hashes (nil = content)
	header       []byte                 // the whole header line, verbatim
}

// rawContent returns the decompressed content of a hand-made bundle.
func rawContent(t testing.TB, o rawOptions, events [][]byte) []byte {
	t.Helper()
	content := o.content
	if content == nil {
		for _, e := range events {
			content = append(append(content, e...), '\n')
		}
	}
	hashOver := o.hashOver
	if hashOver == nil {
		hashOver = content
	}
	head := o.header
	if head == nil {
		key := testKey(t, o.signer)
		sender := o.sender
		if sender == "" {
			sender = key.ID
		}
		sum := sha256.Sum256(hashOver)
		var b canon.ObjectBuilder
		b.Set("format", canon.StringValue(bundles.Format)).
			Set("backpack_uid", canon.StringValue(testUID)).
			Set("sender_key_id", canon.StringValue(sender)).
			Set("sender_frontier", bplog.Frontier{}.Value()).
			Set("basis_frontier", bplog.Frontier{}.Value()).
			Set("event_count", canon.IntValue(int64(len(events)))).
			Set("content_sha256", canon.StringValue(hex.EncodeToString(sum[:]))).
			Set("created_at_utc", canon.StringValue("2026-03-02T10:20:30+00:00"))
		v := b.Value()
		apply := func() {
			for k, x := range o.set {
				v = v.With(k, x)
			}
			v = v.Without(o.drop...)
		}
		if !o.setAfterSign {
			apply()
		}
		sig := ed25519.Sign(key.Key, canon.MustEncode(v.Without("sig")))
		v = v.With("sig", canon.StringValue(base64.StdEncoding.EncodeToString(sig)))
		if o.setAfterSign {
			apply()
		}
		for k, x := range o.tamper {
			v = v.With(k, x)
		}
		head = canon.MustEncode(v)
	}
	return append(append(append([]byte{}, head...), '\n'), content...)
}

func rawBundle(t testing.TB, o rawOptions, events [][]byte) []byte {
	t.Helper()
	return compress(t, rawContent(t, o, events))
}

func compress(t testing.TB, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(content)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHostile(t *testing.T) {
	events, fr := realistic(t, 40, 5)
	good := encode(t, events, fr)
	content := decompress(t, good)

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40

	// A byte inside an event changes, content_sha256 stays: the header
	// still verifies, the content does not.
	i := bytes.Index(content, []byte("waterpoint_"))
	tamperedContent := bytes.Clone(content)
	tamperedContent[i] = 'W'

	long := `{"actor":"a","pad":"` + strings.Repeat("x", 5<<20) + `"}`
	hugeHeader := rawContent(t, rawOptions{set: map[string]canon.Value{"backpack_uid": canon.StringValue(strings.Repeat("u", 2<<20))}}, nil)

	for _, tc := range []struct {
		name  string
		data  []byte
		lim   bundles.Limits
		want  error
		line  int
		inMsg string
	}{
		{"empty input", nil, bundles.Limits{}, bundles.ErrNotBundle, 0, "too short"},
		{"garbage", []byte("this is not a bundle at all"), bundles.Limits{}, bundles.ErrNotBundle, 0, "zstd magic"},
		{"reference bundle", []byte(`{"event_count":0,"type":"provara_delta_v1"}` + "\n"), bundles.Limits{}, bundles.ErrNotBundle, 0, "DecodeReference"},
		{"stored frame, content damaged", func() []byte {
			b := storedFrame(rawContent(t, rawOptions{}, events[:3]))
			b[len(b)-20] ^= 0x01
			return b
		}(), bundles.Limits{}, bundles.ErrContentHash, 0, ""},
		{"magic then garbage", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, "garbage garbage"...), bundles.Limits{}, bundles.ErrCorrupt, 0, ""},
		{"flipped byte in the compressed stream", flipped, bundles.Limits{}, bundles.ErrCorrupt, 0, ""},
		{"flipped byte in an event", compress(t, tamperedContent), bundles.Limits{}, bundles.ErrContentHash, 0, "hashes to"},
		{"truncated", good[:len(good)*2/3], bundles.Limits{}, bundles.ErrCorrupt, 0, ""},
		{"truncated checksum", good[:len(good)-2], bundles.Limits{}, bundles.ErrCorrupt, 0, ""},
		{"trailing garbage", append(bytes.Clone(good), "junk"...), bundles.Limits{}, bundles.ErrCorrupt, 0, ""},
		{"no final newline", compress(t, content[:len(content)-1]), bundles.Limits{}, bundles.ErrCorrupt, 41, "no final newline"},
		{"empty content", compress(t, nil), bundles.Limits{}, bundles.ErrCorrupt, 1, "no header"},
		{"header too big", compress(t, hugeHeader), bundles.Limits{}, bundles.ErrTooLarge, 1, "header longer than"},
		{"header over a small limit", good, bundles.Limits{MaxHeader: 100}, bundles.ErrTooLarge, 1, "header longer than the limit of 100"},
		{"line too long", rawBundle(t, rawOptions{}, [][]byte{[]byte(long)}), bundles.Limits{}, bundles.ErrTooLarge, 2, "event line longer than"},
		{"line over a small limit", good, bundles.Limits{MaxLine: 100}, bundles.ErrTooLarge, 2, "limit of 100 bytes"},
		{"too many events", good, bundles.Limits{MaxEvents: 39}, bundles.ErrTooLarge, 1, "event_count 40 is more than the limit of 39"},
		{"compressed too large", good, bundles.Limits{MaxCompressed: int64(len(good) - 1)}, bundles.ErrTooLarge, 0, "compressed size"},
		{"decompressed too large", good, bundles.Limits{MaxDecompressed: int64(len(content) - 1)}, bundles.ErrTooLarge, 0, "decompressed size"},
		{"event_count too small", rawBundle(t, rawOptions{set: map[string]canon.Value{"event_count": canon.IntValue(39)}}, events), bundles.Limits{}, bundles.ErrEventCount, 41, "more event lines than event_count 39"},
		{"event_count too large", rawBundle(t, rawOptions{set: map[string]canon.Value{"event_count": canon.IntValue(41)}}, events), bundles.Limits{}, bundles.ErrEventCount, 0, "event_count is 41 but the bundle holds 40"},
		{"event_count negative", rawBundle(t, rawOptions{set: map[string]canon.Value{"event_count": canon.IntValue(-1)}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "event_count"},
		{"event_count a float", rawBundle(t, rawOptions{set: map[string]canon.Value{"event_count": canon.FloatValue(40)}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "event_count"},
		{"content hash wrong", rawBundle(t, rawOptions{hashOver: []byte("other")}, events), bundles.Limits{}, bundles.ErrContentHash, 0, ""},
		{"content hash uppercase", rawBundle(t, rawOptions{set: map[string]canon.Value{"content_sha256": canon.StringValue(strings.Repeat("A", 64))}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "lowercase hex"},
		{"non-canonical event line", rawBundle(t, rawOptions{}, [][]byte{events[0], []byte(`{"b":1,"a":2}`)}), bundles.Limits{}, bundles.ErrNotCanonical, 3, "byte 2 of the line"},
		{"event with spaces", rawBundle(t, rawOptions{}, [][]byte{[]byte(`{"a": 2}`)}), bundles.Limits{}, bundles.ErrNotCanonical, 2, ""},
		{"float written as int", rawBundle(t, rawOptions{}, [][]byte{[]byte(`{"c":1e2}`)}), bundles.Limits{}, bundles.ErrNotCanonical, 2, ""},
		{"NaN in event", rawBundle(t, rawOptions{}, [][]byte{[]byte(`{"c":NaN}`)}), bundles.Limits{}, bundles.ErrNotCanonical, 2, "cannot be canonicalised"},
		{"event not an object", rawBundle(t, rawOptions{}, [][]byte{[]byte(`[1,2]`)}), bundles.Limits{}, bundles.ErrBadEvent, 2, "not an object"},
		{"event not JSON", rawBundle(t, rawOptions{}, [][]byte{events[0], events[1], []byte(`{"a":`)}), bundles.Limits{}, bundles.ErrBadEvent, 4, ""},
		{"empty event line", rawBundle(t, rawOptions{}, [][]byte{{}}), bundles.Limits{}, bundles.ErrBadEvent, 2, "empty line"},
		{"header not JSON", compress(t, []byte("hello\n")), bundles.Limits{}, bundles.ErrBadHeader, 1, ""},
		{"header an array", compress(t, []byte("[]\n")), bundles.Limits{}, bundles.ErrBadHeader, 1, "not an object"},
		{"header without format", rawBundle(t, rawOptions{drop: []string{"format"}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "no format"},
		{"future format", rawBundle(t, rawOptions{set: map[string]canon.Value{"format": canon.StringValue("backpack.bundle.v2")}}, events), bundles.Limits{}, bundles.ErrFormatVersion, 1, "backpack.bundle.v2"},
		{"unknown header member", rawBundle(t, rawOptions{set: map[string]canon.Value{"zzz": canon.IntValue(1)}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, `"zzz"`},
		{"missing sig", rawBundle(t, rawOptions{drop: []string{"sig"}, setAfterSign: true}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "sig must be"},
		{"missing uid", rawBundle(t, rawOptions{drop: []string{"backpack_uid"}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "backpack_uid"},
		{"sender key id a number", rawBundle(t, rawOptions{set: map[string]canon.Value{"sender_key_id": canon.IntValue(7)}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "sender_key_id"},
		{"bad frontier", rawBundle(t, rawOptions{set: map[string]canon.Value{"basis_frontier": canon.ArrayValue()}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "basis_frontier"},
		{"missing frontier", rawBundle(t, rawOptions{drop: []string{"sender_frontier"}}, events), bundles.Limits{}, bundles.ErrBadHeader, 1, "sender_frontier is missing"},
		{"non-canonical header", compress(t, append([]byte(" "), content...)), bundles.Limits{}, bundles.ErrNotCanonical, 1, "canonical form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bundles.Decode(bytes.NewReader(tc.data), tc.lim)
			if err == nil {
				t.Fatalf("Decode accepted it (%d events)", len(b.Events))
			}
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			fe, ok := errors.AsType[*bundles.FormatError](err)
			if !ok {
				t.Fatalf("err = %#v, not a *FormatError", err)
			}
			if tc.line != 0 && fe.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", fe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.inMsg) {
				t.Errorf("err = %v, want it to mention %q", err, tc.inMsg)
			}
			if tooLarge := errors.Is(err, bundles.ErrTooLarge); tooLarge == errors.Is(err, bundles.ErrCorrupt) {
				t.Errorf("err = %v matches both or neither of ErrTooLarge and ErrCorrupt", err)
			}
		})
	}
}

// TestEveryFlipFails flips one byte at many positions of a bundle: each
// must be refused (zstd's checksum, the content hash or a parse error),
// never accepted with different events.
func TestEveryFlipFails(t *testing.T) {
	events, fr := realistic(t, 20, 6)
	good := encode(t, events, fr)
	for i := 0; i < len(good); i += max(1, len(good)/200) {
		for _, mask := range []byte{0x01, 0x80} {
			bad := bytes.Clone(good)
			bad[i] ^= mask
			b, err := bundles.Decode(bytes.NewReader(bad), bundles.Limits{})
			if err == nil {
				// Only a flip zstd ignores (unused header bits) may pass,
				// and then the content must be the same.
				if len(b.Events) != len(events) || !bytes.Equal(bytes.Join(b.Events, nil), bytes.Join(events, nil)) {
					t.Fatalf("flip at %d/%#x accepted with different events", i, mask)
				}
				continue
			}
			_, ok := errors.AsType[*bundles.FormatError](err)
			if !ok {
				t.Fatalf("flip at %d/%#x: %v is not a *FormatError", i, mask, err)
			}
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestReadErrorPassesThrough(t *testing.T) {
	events, fr := realistic(t, 50, 7)
	good := encode(t, events, fr)
	boom := errors.New("disk on fire")
	for _, n := range []int{0, 2, len(good) / 2} {
		r := io.MultiReader(bytes.NewReader(good[:n]), errReader{boom})
		_, err := bundles.Decode(r, bundles.Limits{})
		if !errors.Is(err, boom) {
			t.Errorf("cut at %d: err = %v, want the reader's error", n, err)
		}
		if _, ok := errors.AsType[*bundles.FormatError](err); ok {
			t.Errorf("cut at %d: a read error became a FormatError: %v", n, err)
		}
	}
}

func TestWindowTooLarge(t *testing.T) {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(256<<20))
	if err != nil {
		t.Fatal(err)
	}
	// More than one block, so the frame is not a single segment and the
	// window is declared.
	zw.Write(bytes.Repeat([]byte("0123456789abcdef"), 64<<10))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = bundles.Decode(bytes.NewReader(buf.Bytes()), bundles.Limits{})
	if !errors.Is(err, bundles.ErrTooLarge) || !strings.Contains(err.Error(), "window") {
		t.Fatalf("err = %v, want a window limit error", err)
	}
}

// bomb compresses n bytes produced by fill, streaming, and returns the
// compressed bytes (small: the input is repetitive).
func bomb(t *testing.T, prefix []byte, n int64, chunk []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(prefix)
	for written := int64(0); written < n; written += int64(len(chunk)) {
		if _, err := zw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decodeBounded decodes data and reports the time and bytes allocated.
func decodeBounded(t *testing.T, data []byte, lim bundles.Limits) (time.Duration, uint64, error) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := bundles.Decode(bytes.NewReader(data), lim)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return took, after.TotalAlloc - before.TotalAlloc, err
}

func TestZstdBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 2 GiB of input")
	}
	t.Run("2 GiB of zeros", func(t *testing.T) {
		data := bomb(t, nil, 2<<30, make([]byte, 1<<20))
		t.Logf("2 GiB of zeros compress to %d bytes", len(data))
		took, alloc, err := decodeBounded(t, data, bundles.Limits{})
		t.Logf("refused in %v after allocating %d KiB: %v", took, alloc>>10, err)
		if !errors.Is(err, bundles.ErrTooLarge) || !strings.Contains(err.Error(), "header longer than") {
			t.Fatalf("err = %v, want the header limit", err)
		}
		if alloc > 64<<20 {
			t.Errorf("allocated %d MiB", alloc>>20)
		}
		if took > 5*time.Second {
			t.Errorf("took %v", took)
		}
	})
	t.Run("1 GiB of valid-looking event lines", func(t *testing.T) {
		events, _ := realistic(t, 1, 8)
		head := rawContent(t, rawOptions{set: map[string]canon.Value{"event_count": canon.IntValue(5_000_000)}}, nil)
		line := append(bytes.Clone(events[0]), '\n')
		chunk := bytes.Repeat(line, (1<<20)/len(line))
		data := bomb(t, head, 1<<30, chunk)
		t.Logf("1 GiB of lines compress to %d bytes", len(data))
		lim := bundles.Limits{MaxDecompressed: 32 << 20}
		took, alloc, err := decodeBounded(t, data, lim)
		t.Logf("refused in %v after allocating %d MiB: %v", took, alloc>>20, err)
		if !errors.Is(err, bundles.ErrTooLarge) || !strings.Contains(err.Error(), "decompressed size") {
			t.Fatalf("err = %v, want the decompressed size limit", err)
		}
		if alloc > 160<<20 {
			t.Errorf("allocated %d MiB for a 32 MiB limit", alloc>>20)
		}
		if took > 5*time.Second {
			t.Errorf("took %v", took)
		}
	})
}
