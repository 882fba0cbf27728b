package canon_test

import (
	"bytes"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

// FuzzParse requires that the parser never panics and that every document
// it accepts and can encode round-trips: parsing the canonical bytes gives a
// value with the same canonical bytes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[true,false,null],"c":{"d":1.5e-7}}`, `-0.0`, `"\ud83d\ude00"`,
		`123456789012345678901234567890`, `NaN`, `{"a":1,"a":2}`, `"\u2028<>&"`,
		`[[[[[]]]]]`, `{"event_id":"evt_x","sig":"AAAA","payload":{"value":1e16}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := canon.Limits{MaxDepth: 64}.Parse(data)
		if err != nil {
			return
		}
		enc, err := canon.Encode(v)
		if err != nil {
			return // non-finite floats parse but do not encode, as in Python
		}
		v2, err := canon.Parse(enc)
		if err != nil {
			t.Fatalf("canonical output %q does not parse: %v", enc, err)
		}
		enc2, err := canon.Encode(v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed %q to %q (%v)", enc, enc2, err)
		}
		if !canon.Equal(v, v2) {
			t.Fatalf("round trip changed the value of %q", enc)
		}
	})
}
