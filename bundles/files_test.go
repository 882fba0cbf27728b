package bundles_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// testFiles are the static files of a small backpack, out of order.
func testFiles() []bundles.File {
	return []bundles.File{
		{Path: "policies/sync_contract.json", Data: []byte("{\n  \"authorities\": []\n}\n")},
		{Path: bundles.KeysFile, Data: []byte("{\n  \"keys\": [],\n  \"revocations\": []\n}\n")},
		{Path: bundles.GenesisFile, Data: []byte("{\n  \"uid\": \"" + testUID + "\"\n}\n")},
		{Path: "policies/ontology/perception_ontology_v1.json", Data: []byte{0, 1, 2, 0xff}},
	}
}

func withFiles(files []bundles.File) func(*bundles.Header) {
	return func(h *bundles.Header) { h.Files = files }
}

// encodeWith encodes events with test key 0 and h changed by the options.
func encodeWith(tb testing.TB, h bundles.Header, events [][]byte, opts ...func(*bundles.Header)) []byte {
	tb.Helper()
	for _, o := range opts {
		o(&h)
	}
	var buf bytes.Buffer
	if _, err := bundles.Encode(&buf, h, events, testKey(tb, 0).Key, bundles.EncodeOptions{}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// filesObject is the files member for files, built by hand.
func filesObject(files []bundles.File) canon.Value {
	var b canon.ObjectBuilder
	for _, f := range files {
		b.Set(f.Path, canon.StringValue(base64.StdEncoding.EncodeToString(f.Data)))
	}
	return b.Value()
}

func pubB64(tb testing.TB, i int) canon.Value {
	return canon.StringValue(base64.StdEncoding.EncodeToString(testKey(tb, i).Public()))
}

func sameFiles(a, b []bundles.File) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i].Path != b[i].Path || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func TestFilesRoundTrip(t *testing.T) {
	events, fr := realistic(t, 5, 3)
	data := encodeWith(t, header(fr), events, withFiles(testFiles()))
	b, err := bundles.Decode(bytes.NewReader(data), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Header.SenderPublicKey.Equal(testKey(t, 0).Public()) {
		t.Errorf("sender public key %x", b.Header.SenderPublicKey)
	}
	var want []string
	for _, f := range b.Header.Files {
		want = append(want, f.Path)
	}
	if got := strings.Join(want, ","); got != "identity/genesis.json,identity/keys.json,policies/ontology/perception_ontology_v1.json,policies/sync_contract.json" {
		t.Errorf("files in order %s", got)
	}
	for _, f := range testFiles() {
		found := false
		for _, g := range b.Header.Files {
			found = found || (g.Path == f.Path && bytes.Equal(g.Data, f.Data))
		}
		if !found {
			t.Errorf("%s lost or changed", f.Path)
		}
	}
	if err := b.VerifySignature(registry(t, 0)); err != nil {
		t.Errorf("VerifySignature: %v", err)
	}
	if err := b.VerifyCarried(); err != nil {
		t.Errorf("VerifyCarried: %v", err)
	}
	// The header stays canonical with the new members.
	content := decompress(t, data)
	head, _, _ := bytes.Cut(content, []byte("\n"))
	v, err := canon.Parse(head)
	if err != nil || !bytes.Equal(canon.MustEncode(v), head) {
		t.Fatalf("header not canonical: %v\n%s", err, head)
	}
	if v.Field("files").Field(bundles.GenesisFile).Str() != base64.StdEncoding.EncodeToString(testFiles()[2].Data) {
		t.Errorf("files member: %s", canon.MustEncode(v.Field("files")))
	}
}

// TestOlderBundle: a bundle without the optional members still decodes.
func TestOlderBundle(t *testing.T) {
	events, _ := realistic(t, 3, 4)
	b, err := bundles.Decode(bytes.NewReader(rawBundle(t, rawOptions{}, events)), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Header.SenderPublicKey != nil || b.Header.Files != nil {
		t.Errorf("members that are absent: %x %v", b.Header.SenderPublicKey, b.Header.Files)
	}
	if err := b.VerifySignature(registry(t, 0)); err != nil {
		t.Errorf("VerifySignature: %v", err)
	}
	if err := b.VerifyCarried(); !errors.Is(err, bundles.ErrUnknownSender) {
		t.Errorf("VerifyCarried without a key: %v", err)
	}
}

func TestCarriedMembersRefused(t *testing.T) {
	events, _ := realistic(t, 3, 6)
	delta := bplog.Frontier{"surveyor_1": {Head: "evt_x", Count: 1}}
	many := testFiles()
	for i := range bundles.DefaultMaxFiles {
		many = append(many, bundles.File{Path: fmt.Sprintf("policies/p%03d.json", i), Data: []byte("{}")})
	}
	big := append(testFiles(), bundles.File{Path: "policies/big.json", Data: bytes.Repeat([]byte("x"), 2000)})
	with := func(files []bundles.File) map[string]canon.Value {
		return map[string]canon.Value{"files": filesObject(files)}
	}
	extra := func(p string) map[string]canon.Value {
		return with(append(testFiles(), bundles.File{Path: p, Data: []byte("{}")}))
	}
	tests := []struct {
		name     string
		o        rawOptions
		lim      bundles.Limits
		sentinel error
		msg      string
	}{
		{"public key of another key", rawOptions{set: map[string]canon.Value{"sender_public_key_b64": pubB64(t, 1)}}, bundles.Limits{}, bundles.ErrBadHeader, "not sender_key_id"},
		{"public key not base64", rawOptions{set: map[string]canon.Value{"sender_public_key_b64": canon.StringValue("not base64!")}}, bundles.Limits{}, bundles.ErrBadHeader, "sender_public_key_b64"},
		{"public key too short", rawOptions{set: map[string]canon.Value{"sender_public_key_b64": canon.StringValue("AAAA")}}, bundles.Limits{}, bundles.ErrBadHeader, "32-byte"},
		{"public key a number", rawOptions{set: map[string]canon.Value{"sender_public_key_b64": canon.IntValue(1)}}, bundles.Limits{}, bundles.ErrBadHeader, "sender_public_key_b64"},
		{"files in a delta", rawOptions{set: map[string]canon.Value{"files": filesObject(testFiles()), "basis_frontier": delta.Value()}}, bundles.Limits{}, bundles.ErrBadHeader, "full export"},
		{"files an array", rawOptions{set: map[string]canon.Value{"files": canon.ArrayValue()}}, bundles.Limits{}, bundles.ErrBadHeader, "object"},
		{"file not base64", rawOptions{set: map[string]canon.Value{"files": filesObject(testFiles()).With("policies/x.json", canon.StringValue("@@@"))}}, bundles.Limits{}, bundles.ErrBadHeader, "base64"},
		{"file a number", rawOptions{set: map[string]canon.Value{"files": filesObject(testFiles()).With("policies/x.json", canon.IntValue(3))}}, bundles.Limits{}, bundles.ErrBadHeader, "base64"},
		{"no genesis", rawOptions{set: with(testFiles()[:2])}, bundles.Limits{}, bundles.ErrBadHeader, "identity/genesis.json is missing"},
		{"private keys", rawOptions{set: extra("identity/private_keys.json")}, bundles.Limits{}, bundles.ErrBadHeader, "identity/private_keys.json"},
		{"private key under policies", rawOptions{set: extra("policies/old/Private_Keys.json")}, bundles.Limits{}, bundles.ErrBadHeader, "private key"},
		{"dot dot", rawOptions{set: extra("policies/../identity/x.json")}, bundles.Limits{}, bundles.ErrBadHeader, "starting with '.'"},
		{"hidden file", rawOptions{set: extra("policies/.x.json.tmp-1")}, bundles.Limits{}, bundles.ErrBadHeader, "starting with '.'"},
		{"absolute", rawOptions{set: extra("/etc/passwd")}, bundles.Limits{}, bundles.ErrBadHeader, "not identity"},
		{"backslash", rawOptions{set: extra(`policies/a\b.json`)}, bundles.Limits{}, bundles.ErrBadHeader, "not allowed"},
		{"too deep", rawOptions{set: extra("policies/a/b/c/d/e.json")}, bundles.Limits{}, bundles.ErrBadHeader, "levels"},
		{"events file", rawOptions{set: extra("events/events.ndjson")}, bundles.Limits{}, bundles.ErrBadHeader, "not identity"},
		{"too many files", rawOptions{set: with(many)}, bundles.Limits{}, bundles.ErrTooLarge, "more than the limit of 64"},
		{"file too large", rawOptions{set: with(big)}, bundles.Limits{MaxFileSize: 1000}, bundles.ErrTooLarge, "policies/big.json"},
		{"more files than a low limit", rawOptions{set: with(testFiles())}, bundles.Limits{MaxFiles: 3}, bundles.ErrTooLarge, "4 files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bundles.Decode(bytes.NewReader(rawBundle(t, tt.o, events)), tt.lim)
			fe, ok := errors.AsType[*bundles.FormatError](err)
			if !ok || !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tt.sentinel, tt.msg)
			}
			if fe.Line != 1 {
				t.Errorf("line %d, want 1", fe.Line)
			}
		})
	}
}

// TestFilesSigned: the header signature covers the carried files and
// public key, so changing either breaks it for the sender's key and for
// the key the bundle carries.
func TestFilesSigned(t *testing.T) {
	events, _ := realistic(t, 3, 7)
	files := testFiles()
	tampered := testFiles()
	tampered[1].Data = []byte("{\n  \"keys\": [{\"key_id\": \"bp1_evil\"}],\n  \"revocations\": []\n}\n")
	signedWith := map[string]canon.Value{"files": filesObject(files), "sender_public_key_b64": pubB64(t, 0)}
	for name, o := range map[string]rawOptions{
		"files changed":      {set: signedWith, tamper: map[string]canon.Value{"files": filesObject(tampered)}},
		"files added":        {set: map[string]canon.Value{"sender_public_key_b64": pubB64(t, 0)}, tamper: map[string]canon.Value{"files": filesObject(files)}},
		"public key dropped": {set: signedWith, drop: []string{"sender_public_key_b64"}, setAfterSign: true},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := bundles.Decode(bytes.NewReader(rawBundle(t, o, events)), bundles.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.VerifySignature(registry(t, 0)); !errors.Is(err, bundles.ErrBadSignature) {
				t.Errorf("VerifySignature: %v", err)
			}
			if b.Header.SenderPublicKey != nil {
				if err := b.VerifyCarried(); !errors.Is(err, bundles.ErrBadSignature) {
					t.Errorf("VerifyCarried: %v", err)
				}
			}
		})
	}
	// A header signed by key 1 that carries key 1's public key but names
	// key 0 as sender is refused by Decode before any signature check.
	forged := rawBundle(t, rawOptions{signer: 1, sender: testKey(t, 0).ID, set: map[string]canon.Value{"sender_public_key_b64": pubB64(t, 1)}}, events)
	if _, err := bundles.Decode(bytes.NewReader(forged), bundles.Limits{}); !errors.Is(err, bundles.ErrBadHeader) {
		t.Errorf("forged sender: %v", err)
	}
}

func TestEncodeFilesRefuses(t *testing.T) {
	events, fr := realistic(t, 2, 8)
	key := testKey(t, 0).Key
	enc := func(h bundles.Header, opts bundles.EncodeOptions) error {
		_, err := bundles.Encode(&bytes.Buffer{}, h, events, key, opts)
		return err
	}
	h := header(fr)
	h.Files = testFiles()
	if err := enc(h, bundles.EncodeOptions{}); err != nil {
		t.Fatalf("good files: %v", err)
	}
	delta := h
	delta.Basis = bplog.Frontier{"surveyor_1": {Head: "evt_x", Count: 1}}
	if err := enc(delta, bundles.EncodeOptions{}); err == nil || !strings.Contains(err.Error(), "full export") {
		t.Errorf("files in a delta: %v", err)
	}
	priv := h
	priv.Files = append(testFiles(), bundles.File{Path: "identity/private_keys.json", Data: []byte("{}")})
	if err := enc(priv, bundles.EncodeOptions{}); !errors.Is(err, bundles.ErrBadHeader) {
		t.Errorf("private keys: %v", err)
	}
	if err := enc(h, bundles.EncodeOptions{Limits: bundles.Limits{MaxFiles: 2}}); !errors.Is(err, bundles.ErrTooLarge) {
		t.Errorf("too many files: %v", err)
	}
	if err := enc(h, bundles.EncodeOptions{Limits: bundles.Limits{MaxFileSize: 10}}); !errors.Is(err, bundles.ErrTooLarge) {
		t.Errorf("file too large: %v", err)
	}
	if err := enc(h, bundles.EncodeOptions{Limits: bundles.Limits{MaxHeader: 600}}); !errors.Is(err, bundles.ErrTooLarge) {
		t.Errorf("header too large: %v", err)
	}
	other := h
	other.SenderPublicKey = testKey(t, 1).Public()
	if err := enc(other, bundles.EncodeOptions{}); err == nil {
		t.Error("a public key that is not the signing key was accepted")
	}
	var pub ed25519.PublicKey = testKey(t, 0).Public()
	same := h
	same.SenderPublicKey = pub
	if err := enc(same, bundles.EncodeOptions{}); err != nil {
		t.Errorf("the signing key's own public key: %v", err)
	}
}
