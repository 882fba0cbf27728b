package canon_test

import (
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

// validSeeds are documents Valid must judge as Parse does.
var validSeeds = []string{
	`{"a":1,"b":[true,false,null],"c":{"d":1.5e-7}}`, `-0.0`, `"\ud83d\ude00"`, `"\ud83d"`,
	`"\ude00"`, `"\ud83dx"`, `123456789012345678901234567890`, `NaN`, `-Infinity`, `Infinity`,
	`-NaN`, `{"a":1,"a":2}`, `"\u2028<>&"`, `[[[[[]]]]]`, ` [1 , 2 ] `, `[1,]`, `{"a":1,}`,
	`{"a" 1}`, `{1:2}`, `"\x"`, `"a` + "\x01" + `"`, "\"\xff\"", "\"\xc3\"", "\"\xc3\\n\"",
	`01`, `1.`, `1.e5`, `1e`, `-`, `--1`, `1e+`, `.5`, `"\/"`, `""`, `[`, `{`, `{"a":`,
	`tru`, `nul`, `"\u00e9"`, "\"\\u00e9\xc3\xa9\"", `1 2`, `[1]]`, "\u00a0", `"abc`,
}

func TestValid(t *testing.T) {
	for _, s := range validSeeds {
		_, err := canon.Parse([]byte(s))
		if got := canon.Valid([]byte(s)); got != (err == nil) {
			t.Errorf("Valid(%q) = %v, Parse error %v", s, got, err)
		}
	}
	lim := canon.Limits{MaxDepth: 3, MaxIntDigits: 5, MaxSize: 40}
	for _, s := range []string{`[[[1]]]`, `[[[[1]]]]`, `{"a":{"b":{"c":1}}}`, `123456`, `-12345`, `-123456`, `1234567.5`, strings.Repeat(" ", 41)} {
		_, err := lim.Parse([]byte(s))
		if got := lim.Valid([]byte(s)); got != (err == nil) {
			t.Errorf("limited Valid(%q) = %v, Parse error %v", s, got, err)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range []canon.Limits{{}, {MaxDepth: 4, MaxIntDigits: 6}} {
			_, err := lim.Parse(data)
			if got := lim.Valid(data); got != (err == nil) {
				t.Fatalf("Valid(%q) = %v, Parse error %v", data, got, err)
			}
		}
	})
}
