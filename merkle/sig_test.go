package merkle_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

func TestSignManifestVector(t *testing.T) {
	v := extraVectors(t).Field("manifest_sig")
	priv, keyID := testKey(t, v.Field("key").Str())
	root, signedAt := v.Field("merkle_root").Str(), v.Field("signed_at_utc").Str()

	file, err := merkle.SignManifest(priv, keyID, root, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	if want := v.Field("file_text_as_bootstrap_writes_it").Str(); string(file) != want {
		t.Errorf("file\n%s\nwant\n%s", file, want)
	}
	rec, err := merkle.ParseManifestSig(file)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Sig != v.Field("sig").Str() {
		t.Errorf("sig %s, want %s", rec.Sig, v.Field("sig").Str())
	}
	msg, err := rec.SignedBytes()
	if err != nil || string(msg) != v.Field("signed_bytes_text").Str() {
		t.Errorf("signed bytes %s (%v)", msg, err)
	}
	if again, _ := rec.Encode(); !bytes.Equal(again, file) {
		t.Errorf("Encode after parse differs:\n%s", again)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if err := merkle.VerifyManifestSig(rec, pub, root); err != nil {
		t.Errorf("verify against the signed root: %v", err)
	}
	if err := merkle.VerifyManifestSig(rec, pub, ""); err != nil {
		t.Errorf("verify without a current root: %v", err)
	}
	other := merkle.EmptyRoot.String()
	err = merkle.VerifyManifestSig(rec, pub, other)
	var stale *merkle.StaleRootError
	if !errors.As(err, &stale) || !errors.Is(err, merkle.ErrStaleRoot) || errors.Is(err, merkle.ErrBadSignature) {
		t.Fatalf("verify against another root: %v, want *StaleRootError", err)
	}
	if stale.Signed != root || stale.Current != other || stale.KeyID != keyID {
		t.Errorf("stale error %+v", stale)
	}
	k2, _ := testKey(t, "k2")
	if err := merkle.VerifyManifestSig(rec, k2.Public().(ed25519.PublicKey), root); !errors.Is(err, merkle.ErrBadSignature) {
		t.Errorf("verify with another key: %v, want ErrBadSignature", err)
	}
}

// TestStoredManifestSigs checks the manifest.sig facts of expected.json;
// the reference fixture's signature is valid but over an older root.
func TestStoredManifestSigs(t *testing.T) {
	for _, name := range backpacks {
		t.Run(name, func(t *testing.T) {
			want := expected(t, name)
			dir := conformance.Path(t, name)
			rec, err := merkle.ParseManifestSig(mustReadFile(t, dir, "manifest.sig"))
			if err != nil {
				t.Fatal(err)
			}
			if rec.KeyID != want.ManifestSigKeyID || rec.MerkleRoot != want.ManifestSigMerkleRoot {
				t.Errorf("key %s root %s, want %s %s", rec.KeyID, rec.MerkleRoot, want.ManifestSigKeyID, want.ManifestSigMerkleRoot)
			}
			pub := publicKeyOf(t, dir, rec.KeyID)
			current := merkle.StripSpace(string(mustReadFile(t, dir, "merkle_root.txt")))
			err = merkle.VerifyManifestSig(rec, pub, current)
			valid := err == nil || errors.Is(err, merkle.ErrStaleRoot)
			matches := err == nil
			if valid != want.ManifestSigSignatureValid || matches != want.ManifestSigMatchesCurrentRoot {
				t.Errorf("VerifyManifestSig: %v; expected.json: valid %v, matches current root %v", err, want.ManifestSigSignatureValid, want.ManifestSigMatchesCurrentRoot)
			}
			var stale *merkle.StaleRootError
			if errors.As(err, &stale) && (stale.Signed != want.ManifestSigMerkleRoot || stale.Current != want.MerkleRootStored) {
				t.Errorf("stale root error %+v", stale)
			}
			if name == "reference_backpack" && !errors.As(err, &stale) {
				t.Errorf("reference fixture: %v, want a valid signature over a stale root", err)
			}
		})
	}
}

func TestVerifyManifestSigTampering(t *testing.T) {
	priv, keyID := testKey(t, "k1")
	pub := priv.Public().(ed25519.PublicKey)
	root := merkle.EmptyRoot.String()
	file, err := merkle.SignManifest(priv, keyID, root, "2026-01-02T03:04:05+00:00")
	if err != nil {
		t.Fatal(err)
	}
	good, err := merkle.ParseManifestSig(file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(r *merkle.SigRecord)
	}{
		{"root", func(r *merkle.SigRecord) { r.MerkleRoot = strings.Repeat("0", 64) }},
		{"key id", func(r *merkle.SigRecord) { r.KeyID = "bp1_0000000000000000" }},
		{"time", func(r *merkle.SigRecord) { r.SignedAtUTC = "2026-01-02T03:04:06+00:00" }},
		{"spec version", func(r *merkle.SigRecord) { r.SpecVersion = "1.1" }},
		{"extra member", func(r *merkle.SigRecord) {
			r.Extra = []canon.Member{{Key: "note", Value: canon.StringValue("x")}}
		}},
		{"sig not base64", func(r *merkle.SigRecord) { r.Sig = "!!!" }},
		{"sig with a space", func(r *merkle.SigRecord) { r.Sig = r.Sig[:10] + " " + r.Sig[10:] }},
		{"sig short", func(r *merkle.SigRecord) { r.Sig = "AAAA" }},
		{"sig empty", func(r *merkle.SigRecord) { r.Sig = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.change(&r)
			if err := merkle.VerifyManifestSig(r, pub, ""); !errors.Is(err, merkle.ErrBadSignature) {
				t.Errorf("error = %v, want ErrBadSignature", err)
			}
		})
	}
	// Line breaks inside the Base64 text are ignored, by Go's decoder and
	// by the reference's.
	wrapped := good
	wrapped.Sig = good.Sig[:44] + "\r\n" + good.Sig[44:]
	if err := merkle.VerifyManifestSig(wrapped, pub, root); err != nil {
		t.Errorf("sig with a line break: %v", err)
	}
	if err := merkle.VerifyManifestSig(good, pub[:31], ""); err == nil || errors.Is(err, merkle.ErrBadSignature) {
		t.Errorf("short public key: %v", err)
	}
}

// TestManifestSigExtraMembersCovered: a record with an extra member,
// signed over everything but sig, verifies, and the member is kept.
func TestManifestSigExtraMembersCovered(t *testing.T) {
	priv, keyID := testKey(t, "k2")
	r := merkle.SigRecord{
		MerkleRoot: merkle.EmptyRoot.String(), KeyID: keyID, SpecVersion: "1.0", SignedAtUTC: "t",
		Extra: []canon.Member{{Key: "anchor", Value: canon.ArrayValue(canon.IntValue(1), canon.FloatValue(2.5))}},
	}
	msg, err := r.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"anchor":[1,2.5],"key_id":"bp1_a1d577350a959ecd","merkle_root":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","signed_at_utc":"t","spec_version":"1.0"}`; string(msg) != want {
		t.Errorf("signed bytes %s", msg)
	}
	// Sign the message directly, as another implementation might, and
	// write the record in a different layout.
	r.Sig = b64(ed25519.Sign(priv, msg))
	file := `{"sig":"` + r.Sig + `","spec_version":"1.0","anchor":[1, 2.5],"signed_at_utc":"t","key_id":"` + keyID + `","merkle_root":"` + r.MerkleRoot + `"}`
	got, err := merkle.ParseManifestSig([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Extra) != 1 || got.Extra[0].Key != "anchor" {
		t.Fatalf("extra %v", got.Extra)
	}
	if err := merkle.VerifyManifestSig(got, priv.Public().(ed25519.PublicKey), r.MerkleRoot); err != nil {
		t.Errorf("verify: %v", err)
	}
	got.Extra = nil
	if err := merkle.VerifyManifestSig(got, priv.Public().(ed25519.PublicKey), ""); !errors.Is(err, merkle.ErrBadSignature) {
		t.Errorf("dropping the extra member still verifies: %v", err)
	}
}

func TestParseManifestSigErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":          `{"sig":`,
		"array":             `[]`,
		"missing sig":       `{"merkle_root":"r","key_id":"k","spec_version":"1.0","signed_at_utc":"t"}`,
		"missing key_id":    `{"merkle_root":"r","spec_version":"1.0","signed_at_utc":"t","sig":"s"}`,
		"root not a string": `{"merkle_root":1,"key_id":"k","spec_version":"1.0","signed_at_utc":"t","sig":"s"}`,
		"too large":         `{"x":"` + strings.Repeat("a", 70000) + `"}`,
	} {
		if _, err := merkle.ParseManifestSig([]byte(in)); !errors.Is(err, merkle.ErrMalformedSig) {
			t.Errorf("%s: error = %v, want ErrMalformedSig", name, err)
		}
	}
}

func TestSignManifestRefusesBadInput(t *testing.T) {
	priv, keyID := testKey(t, "k1")
	root := merkle.EmptyRoot.String()
	if _, err := merkle.SignManifest(priv, keyID, strings.ToUpper(root), "t"); !errors.Is(err, merkle.ErrBadHash) {
		t.Errorf("uppercase root: %v", err)
	}
	if _, err := merkle.SignManifest(priv[:32], keyID, root, "t"); err == nil {
		t.Error("seed-sized private key accepted")
	}
	if _, err := merkle.SignManifest(priv, "", root, "t"); err == nil {
		t.Error("empty key id accepted")
	}
	if _, err := merkle.SignManifest(priv, keyID, root, ""); err == nil {
		t.Error("empty time accepted")
	}
	if _, err := merkle.SignManifest(priv, "bad\xff", root, "t"); err == nil {
		t.Error("invalid UTF-8 key id accepted")
	}
}

// TestDemoSigWithoutNewline: the demo's manifest.sig has no final newline;
// it parses and re-encodes to the bootstrap layout plus the newline.
func TestDemoSigWithoutNewline(t *testing.T) {
	data := conformance.ReadFile(t, filepath.Join("demo_backpack", "manifest.sig"))
	if bytes.HasSuffix(data, []byte("\n")) {
		t.Skip("demo manifest.sig now ends with a newline")
	}
	rec, err := merkle.ParseManifestSig(data)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := rec.Encode()
	if err != nil || string(enc) != string(data)+"\n" {
		t.Errorf("Encode = %q (%v)", enc, err)
	}
}
