package bundles_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	bplog "github.com/backpack-field/backpack/log"
)

// fuzzLimits keep fuzzing fast; the logic is the same as with the defaults.
var fuzzLimits = bundles.Limits{
	MaxCompressed:   1 << 20,
	MaxDecompressed: 4 << 20,
	MaxHeader:       64 << 10,
	MaxLine:         64 << 10,
	MaxEvents:       1000,
}

func FuzzDecode(f *testing.F) {
	events, fr := realistic(f, 6, 10)
	for _, n := range []int{0, 1, 6} {
		f.Add(encode(f, events[:n], fr))
	}
	f.Add(rawBundle(f, rawOptions{}, [][]byte{[]byte(`{"a":[1,2.5,{"b":null}],"c":"\u2028"}`)}))
	f.Add(compress(f, []byte("{}\n")))
	// Stored (uncompressed) frames without checksum let the fuzzer mutate
	// the content itself.
	f.Add(storedFrame(rawContent(f, rawOptions{}, events[:2])))
	f.Add(storedFrame(rawContent(f, rawOptions{}, [][]byte{[]byte(`{"a":1}`), []byte(`{"b":[]}`)})))
	f.Add(encodeWith(f, header(bplog.Frontier{}), events[:2], withFiles(testFiles())))
	f.Add(storedFrame(rawContent(f, rawOptions{set: map[string]canon.Value{
		"files": filesObject(testFiles()), "sender_public_key_b64": pubB64(f, 0)}}, events[:1])))
	f.Add([]byte("\x28\xb5\x2f\xfd"))
	f.Add([]byte(refHeader + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := bundles.Decode(bytes.NewReader(data), fuzzLimits)
		if err != nil {
			_, ok := errors.AsType[*bundles.FormatError](err)
			if !ok {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			return
		}
		// Accepted: re-encoding gives a bundle with the same content.
		h := b.Header
		h.SenderKeyID, h.SenderPublicKey = "", nil
		var buf bytes.Buffer
		got, err := bundles.Encode(&buf, h, b.Events, testKey(t, 0).Key, bundles.EncodeOptions{})
		if err != nil {
			t.Fatalf("accepted bundle does not re-encode: %v", err)
		}
		if got.ContentSHA256 != b.Header.ContentSHA256 || got.EventCount != b.Header.EventCount {
			t.Fatalf("re-encoded header %+v differs from %+v", got, b.Header)
		}
		b2, err := bundles.Decode(&buf, fuzzLimits)
		if err != nil {
			t.Fatalf("re-encoded bundle does not decode: %v", err)
		}
		if len(b2.Events) != len(b.Events) {
			t.Fatalf("%d events became %d", len(b.Events), len(b2.Events))
		}
		for i := range b.Events {
			if !bytes.Equal(b.Events[i], b2.Events[i]) {
				t.Fatalf("event %d changed: %q -> %q", i, b.Events[i], b2.Events[i])
			}
		}
		if b2.Header.UID != b.Header.UID || b2.Header.CreatedAt != b.Header.CreatedAt ||
			!sameFrontier(b2.Header.Sender, b.Header.Sender) || !sameFrontier(b2.Header.Basis, b.Header.Basis) ||
			!sameFiles(b2.Header.Files, b.Header.Files) {
			t.Fatalf("header changed: %+v -> %+v", b.Header, b2.Header)
		}
		if b.Header.SenderPublicKey != nil {
			if err := b.VerifyCarried(); err != nil && !errors.Is(err, bundles.ErrBadSignature) {
				t.Fatalf("VerifyCarried: %v", err)
			}
		}
		if err := b2.VerifyCarried(); err != nil {
			t.Fatalf("re-encoded VerifyCarried: %v", err)
		}
		if err := b2.VerifySignature(registry(t, 0)); err != nil {
			t.Fatalf("re-encoded signature: %v", err)
		}
	})
}

func FuzzDecodeReference(f *testing.F) {
	events, _ := realistic(f, 4, 11)
	var buf bytes.Buffer
	if err := bundles.EncodeReference(&buf, events, canon.ArrayValue(), canon.StringValue("evt_x"), "2026-01-01T00:00:00+00:00"); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(refHeader + "\n\n {oops\n[1]\n" + `{"b": 1e2, "a": "\u00e9"}` + "\r\n\u00a0"))
	if _, err := conformance.Find(); err == nil {
		d := deltaVectors(f)
		for _, k := range []string{"bundle_all", "bundle_since", "bundle_since_unknown_hash"} {
			f.Add([]byte(d.Field(k).Str()))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rb, err := bundles.DecodeReference(bytes.NewReader(data), fuzzLimits)
		if err != nil {
			_, ok := errors.AsType[*bundles.FormatError](err)
			if !ok {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			return
		}
		if len(rb.Events) != len(rb.EventLines) {
			t.Fatalf("%d events, %d line numbers", len(rb.Events), len(rb.EventLines))
		}
		for _, r := range rb.Rejected {
			if r.Line < 2 || r.Offset < 0 || r.Offset >= int64(len(data)) {
				t.Fatalf("rejected line %d at %d of %d bytes", r.Line, r.Offset, len(data))
			}
		}
		// Accepted: writing the events again gives a bundle that reads
		// back to the same canonical events, none rejected.
		var out bytes.Buffer
		if err := bundles.EncodeReference(&out, rb.Events, rb.Keys, rb.SinceHash, rb.ExportedAt); err != nil {
			t.Fatalf("accepted bundle does not re-encode: %v", err)
		}
		rb2, err := bundles.DecodeReference(&out, fuzzLimits)
		if err != nil {
			t.Fatalf("re-encoded bundle does not decode: %v", err)
		}
		if len(rb2.Rejected) != 0 || len(rb2.Events) != len(rb.Events) {
			t.Fatalf("re-read: %d events, %d rejected; want %d, 0", len(rb2.Events), len(rb2.Rejected), len(rb.Events))
		}
		for i := range rb.Events {
			if !bytes.Equal(rb.Events[i], rb2.Events[i]) {
				t.Fatalf("event %d changed: %q -> %q", i, rb.Events[i], rb2.Events[i])
			}
		}
		if !canon.Equal(rb2.Keys, rb.Keys) || !canon.Equal(rb2.SinceHash, rb.SinceHash) {
			t.Fatal("header fields changed")
		}
		// And the events survive a trip through a backpack bundle.
		if len(rb.Events) > 0 {
			var bb bytes.Buffer
			if _, err := bundles.Encode(&bb, header(bplog.Frontier{}), rb.Events, testKey(t, 0).Key, bundles.EncodeOptions{}); err != nil {
				t.Fatalf("reference events do not make a backpack bundle: %v", err)
			}
		}
	})
}

// storedFrame wraps content (at most 64 KiB) in a zstd frame holding one
// raw block, with no checksum (RFC 8878 §3.1.1).
func storedFrame(content []byte) []byte {
	if len(content) > 64<<10 {
		panic("bug: storedFrame content too large")
	}
	out := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if len(content) < 256 {
		out = append(out, 0x20, byte(len(content))) // single segment, 1-byte size
	} else {
		n := len(content) - 256
		out = append(out, 0x60, byte(n), byte(n>>8)) // single segment, 2-byte size - 256
	}
	bh := 1 | len(content)<<3 // last block, raw
	out = append(out, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(out, content...)
}
