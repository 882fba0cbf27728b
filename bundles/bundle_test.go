package bundles_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	bplog "github.com/backpack-field/backpack/log"
)

func sameFrontier(a, b bplog.Frontier) bool {
	return bytes.Equal(a.Encode(), b.Encode())
}

func TestRoundTrip(t *testing.T) {
	all, fr := realistic(t, 300, 1)
	for _, tc := range []struct {
		name   string
		events [][]byte
		level  zstd.EncoderLevel
	}{
		{"empty", nil, 0},
		{"one", all[:1], 0},
		{"300 default", all, zstd.SpeedDefault},
		{"300 fastest", all, zstd.SpeedFastest},
		{"300 best", all, zstd.SpeedBestCompression},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := header(fr)
			h.Basis = bplog.Frontier{"surveyor_1": {Head: "evt_000000000000000000000000", Count: 3}}
			var buf bytes.Buffer
			before := runtime.NumGoroutine()
			got, err := bundles.Encode(&buf, h, tc.events, testKey(t, 0).Key, bundles.EncodeOptions{Level: tc.level})
			if err != nil {
				t.Fatal(err)
			}
			if got.SenderKeyID != testKey(t, 0).ID || got.EventCount != int64(len(tc.events)) || got.Sig == "" {
				t.Errorf("Encode returned header %+v", got)
			}
			if bundles.Sniff(buf.Bytes()) != bundles.KindBackpack {
				t.Errorf("Sniff = %v", bundles.Sniff(buf.Bytes()))
			}
			b, err := bundles.Decode(bytes.NewReader(buf.Bytes()), bundles.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Errorf("goroutines: %d before, %d after", before, n)
			}
			if len(b.Events) != len(tc.events) {
				t.Fatalf("decoded %d events, want %d", len(b.Events), len(tc.events))
			}
			for i := range b.Events {
				if !bytes.Equal(b.Events[i], tc.events[i]) {
					t.Fatalf("event %d differs:\n got %s\nwant %s", i, b.Events[i], tc.events[i])
				}
			}
			d := b.Header
			if d.UID != h.UID || d.SenderKeyID != got.SenderKeyID || d.CreatedAt != h.CreatedAt ||
				d.EventCount != got.EventCount || d.ContentSHA256 != got.ContentSHA256 || d.Sig != got.Sig ||
				!sameFrontier(d.Sender, fr) || !sameFrontier(d.Basis, h.Basis) {
				t.Errorf("header round trip:\n got %+v\nwant %+v", d, got)
			}
			if err := b.VerifySignature(registry(t, 0, 1)); err != nil {
				t.Errorf("VerifySignature: %v", err)
			}
		})
	}
}

// TestContentLayout pins the decompressed layout: header line, event lines,
// each ending in "\n"; content_sha256 over the event section; sig over the
// header without sig.
func TestContentLayout(t *testing.T) {
	events, fr := realistic(t, 3, 2)
	var buf bytes.Buffer
	h, err := bundles.Encode(&buf, header(fr), events, testKey(t, 0).Key, bundles.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	content := decompress(t, buf.Bytes())
	head, rest, ok := bytes.Cut(content, []byte("\n"))
	if !ok {
		t.Fatal("no header line")
	}
	want := append(bytes.Join(events, []byte("\n")), '\n')
	if !bytes.Equal(rest, want) {
		t.Fatalf("event section:\n%s\nwant\n%s", rest, want)
	}
	if sum := sha256.Sum256(rest); sum != h.ContentSHA256 {
		t.Errorf("content_sha256 %x, want %x", h.ContentSHA256, sum)
	}
	v, err := canon.Parse(head)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(canon.MustEncode(v), head) {
		t.Errorf("header is not canonical: %s", head)
	}
	var keys []string
	for _, m := range v.Members() {
		keys = append(keys, m.Key)
	}
	if got := strings.Join(keys, ","); got != "backpack_uid,basis_frontier,content_sha256,created_at_utc,event_count,format,sender_frontier,sender_key_id,sender_public_key_b64,sig" {
		t.Errorf("header members: %s", got)
	}
	if v.Field("format").Str() != bundles.Format || v.Field("content_sha256").Str() != hex.EncodeToString(h.ContentSHA256[:]) {
		t.Errorf("header: %s", head)
	}
	if !bytes.Equal(canon.MustEncode(v.Field("sender_frontier")), fr.Encode()) {
		t.Errorf("sender_frontier %s, want %s", canon.MustEncode(v.Field("sender_frontier")), fr.Encode())
	}
	if got := canon.MustEncode(v.Field("basis_frontier")); string(got) != `{"actors":{},"format":"backpack.frontier.v1"}` {
		t.Errorf("empty basis_frontier: %s", got)
	}
	sig, _ := base64.StdEncoding.DecodeString(v.Field("sig").Str())
	if !verify(t, canon.MustEncode(v.Without("sig")), sig) {
		t.Error("sig does not verify over the canonical header without sig")
	}
}

func verify(t *testing.T, msg, sig []byte) bool {
	t.Helper()
	k, err := bplog.NewVerifyKey(testKey(t, 0).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k.Verify(msg, sig)
}

func decompress(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out, err := zr.DecodeAll(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEncodeRefuses(t *testing.T) {
	events, fr := realistic(t, 2, 3)
	key := testKey(t, 0).Key
	for _, tc := range []struct {
		name   string
		h      bundles.Header
		events [][]byte
		want   string
	}{
		{"non-canonical event", header(fr), [][]byte{[]byte(`{"b":1, "a":2}`)}, "canonical"},
		{"not an object", header(fr), [][]byte{[]byte(`[1]`)}, "not an object"},
		{"newline inside", header(fr), [][]byte{append(append([]byte{}, events[0]...), '\n')}, "canonical"},
		{"empty line", header(fr), [][]byte{{}}, "empty"},
		{"wrong key id", func() bundles.Header { h := header(fr); h.SenderKeyID = testKey(t, 1).ID; return h }(), events, "is not the signing key"},
		{"no uid", func() bundles.Header { h := header(fr); h.UID = ""; return h }(), events, "backpack_uid"},
		{"no time", func() bundles.Header { h := header(fr); h.CreatedAt = ""; return h }(), events, "created_at_utc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := bundles.Encode(&buf, tc.h, tc.events, key, bundles.EncodeOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]bundles.Kind{
		"\x28\xb5\x2f\xfd\x00":  bundles.KindBackpack,
		`{"event_count":0}`:     bundles.KindReference,
		" \r\n\t{":              bundles.KindReference,
		"":                      bundles.KindUnknown,
		"\x28\xb5\x2f":          bundles.KindUnknown,
		"\xef\xbb\xbf{":         bundles.KindUnknown, // a BOM: the reference cannot read it either
		"PK\x03\x04":            bundles.KindUnknown,
		"[{}]":                  bundles.KindUnknown,
		"\x28\xb5\x2f\xfe\x00a": bundles.KindUnknown,
	} {
		if got := bundles.Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	events, fr := realistic(t, 5, 4)
	data := encode(t, events, fr)
	b, err := bundles.Decode(bytes.NewReader(data), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.VerifySignature(registry(t, 0)); err != nil {
		t.Fatalf("trusted sender: %v", err)
	}
	t.Run("unknown sender", func(t *testing.T) {
		err := b.VerifySignature(registry(t, 1, 2))
		if !errors.Is(err, bundles.ErrUnknownSender) || errors.Is(err, bundles.ErrBadSignature) {
			t.Fatalf("err = %v, want ErrUnknownSender", err)
		}
	})
	t.Run("no registry", func(t *testing.T) {
		if err := b.VerifySignature(nil); !errors.Is(err, bundles.ErrUnknownSender) {
			t.Fatalf("err = %v, want ErrUnknownSender", err)
		}
	})
	t.Run("revoked sender", func(t *testing.T) {
		entry := bplog.KeyEntry(testKey(t, 0).Public(), nil, "2026-01-01T00:00:00+00:00").With("status", canon.StringValue(bplog.StatusRevoked))
		var kb canon.ObjectBuilder
		kb.Set("keys", canon.ArrayValue(entry))
		reg, err := bplog.ParseRegistry(canon.MustEncode(kb.Value()))
		if err != nil {
			t.Fatal(err)
		}
		err = b.VerifySignature(reg)
		if !errors.Is(err, bundles.ErrUnknownSender) || !errors.Is(err, bplog.ErrRevokedKey) {
			t.Fatalf("err = %v, want ErrUnknownSender and log.ErrRevokedKey", err)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		// The header says key 0 but key 1 signed it.
		forged := rawBundle(t, rawOptions{signer: 1, sender: testKey(t, 0).ID}, events)
		fb, err := bundles.Decode(bytes.NewReader(forged), bundles.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		err = fb.VerifySignature(registry(t, 0, 1))
		if !errors.Is(err, bundles.ErrBadSignature) || errors.Is(err, bundles.ErrUnknownSender) {
			t.Fatalf("err = %v, want ErrBadSignature", err)
		}
	})
	t.Run("tampered header", func(t *testing.T) {
		// Valid structure, but created_at_utc changed after signing.
		tampered := rawBundle(t, rawOptions{set: map[string]canon.Value{"created_at_utc": canon.StringValue("2030-01-01T00:00:00+00:00")}, setAfterSign: true}, events)
		fb, err := bundles.Decode(bytes.NewReader(tampered), bundles.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := fb.VerifySignature(registry(t, 0)); !errors.Is(err, bundles.ErrBadSignature) {
			t.Fatalf("err = %v, want ErrBadSignature", err)
		}
	})
	t.Run("sig not base64", func(t *testing.T) {
		bad := rawBundle(t, rawOptions{set: map[string]canon.Value{"sig": canon.StringValue("not base64!")}, setAfterSign: true}, events)
		fb, err := bundles.Decode(bytes.NewReader(bad), bundles.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := fb.VerifySignature(registry(t, 0)); !errors.Is(err, bundles.ErrBadSignature) {
			t.Fatalf("err = %v, want ErrBadSignature", err)
		}
	})
}

// TestKeysMatchVectors checks that the first two test seeds are the
// reference's test keys.
func TestKeysMatchVectors(t *testing.T) {
	var v struct {
		TestKeys []struct {
			SeedHex string `json:"seed_hex"`
			KeyID   string `json:"key_id"`
		} `json:"test_keys"`
	}
	conformance.DecodeStd(t, &v, "extra_vectors.json")
	if len(v.TestKeys) < 2 {
		t.Fatalf("extra_vectors.json has %d test keys", len(v.TestKeys))
	}
	for i, k := range v.TestKeys[:2] {
		if k.SeedHex != seedsHex[i] || k.KeyID != testKey(t, i).ID {
			t.Errorf("test key %d: vectors say %s %s, we use %s %s", i, k.SeedHex, k.KeyID, seedsHex[i], testKey(t, i).ID)
		}
	}
}

// TestStoredFrame decodes a hand-made zstd frame (a raw block, no
// checksum): the format depends on the content, not on how it was
// compressed.
func TestStoredFrame(t *testing.T) {
	events, _ := realistic(t, 3, 12)
	b, err := bundles.Decode(bytes.NewReader(storedFrame(rawContent(t, rawOptions{}, events))), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != 3 || !bytes.Equal(b.Events[2], events[2]) {
		t.Fatalf("decoded %d events", len(b.Events))
	}
	if err := b.VerifySignature(registry(t, 0)); err != nil {
		t.Fatal(err)
	}
}
