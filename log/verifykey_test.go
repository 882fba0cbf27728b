package log_test

import (
	"crypto/ed25519"
	"testing"

	bplog "github.com/backpack-field/backpack/log"
)

// FuzzVerifyKey checks VerifyKey against crypto/ed25519.Verify on
// signatures that are valid, altered, or arbitrary.
func FuzzVerifyKey(f *testing.F) {
	f.Add([]byte("seed-0"), []byte("message"), []byte{}, uint8(0), uint8(0))
	f.Add([]byte("seed-1"), []byte(""), []byte{1, 2, 3}, uint8(63), uint8(0x80))
	f.Fuzz(func(t *testing.T, seed, msg, junk []byte, pos, flip uint8) {
		var s [32]byte
		copy(s[:], seed)
		priv := ed25519.NewKeyFromSeed(s[:])
		pub := priv.Public().(ed25519.PublicKey)
		vk, err := bplog.NewVerifyKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		sig := ed25519.Sign(priv, msg)
		cases := [][]byte{sig}
		alt := append([]byte(nil), sig...)
		alt[int(pos)%64] ^= flip
		cases = append(cases, alt)
		if len(junk) >= 64 {
			cases = append(cases, junk[:64])
		}
		for _, c := range cases {
			if got, want := vk.Verify(msg, c), ed25519.Verify(pub, msg, c); got != want {
				t.Fatalf("VerifyKey %v, crypto/ed25519 %v for sig %x", got, want, c)
			}
		}
		// Arbitrary public keys too, where they decode.
		if len(junk) >= 32 {
			if vk2, err := bplog.NewVerifyKey(junk[:32]); err == nil {
				if got, want := vk2.Verify(msg, sig), ed25519.Verify(junk[:32], msg, sig); got != want {
					t.Fatalf("arbitrary key %x: %v vs %v", junk[:32], got, want)
				}
			}
		}
	})
}

func BenchmarkVerifyKey(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := priv.Public().(ed25519.PublicKey)
	msg := make([]byte, 350)
	sig := ed25519.Sign(priv, msg)
	vk, _ := bplog.NewVerifyKey(pub)
	b.Run("prepared", func(b *testing.B) {
		for b.Loop() {
			if !vk.Verify(msg, sig) {
				b.Fatal("bad")
			}
		}
	})
	b.Run("crypto_ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad")
			}
		}
	})
}
