package reducer_test

import (
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

// The expected values in this file come from CPython 3.11.

func TestParsePyFloat(t *testing.T) {
	tests := []struct {
		in   string
		want string // Python repr of float(in), or "ERR"
	}{
		{"0.7", "0.7"}, {" 0.25 ", "0.25"}, {"1_0", "10.0"}, {"1__0", "ERR"},
		{"inf", "inf"}, {"-Infinity", "-inf"}, {"nan", "nan"}, {"NaN", "nan"},
		{"1e-1", "0.1"}, {"\u0661.5", "1.5"}, {"abc", "ERR"},
		{"\u00a00.8\u2003", "0.8"}, {"\u001c0.8", "ERR"}, {"0.8\v", "0.8"},
		{"1e400", "inf"}, {"-1e400", "-inf"}, {"1e-400", "0.0"}, {".5", "0.5"},
		{"5.", "5.0"}, {"+.5e1", "5.0"}, {"1_000e-3", "1.0"}, {"0x1p-2", "ERR"},
		{"", "ERR"}, {"   ", "ERR"}, {"infinity", "inf"}, {"INF", "inf"},
		{"in_f", "ERR"}, {"1e", "ERR"}, {"1_", "ERR"}, {"_1", "ERR"}, {"1._5", "ERR"},
		{"1e1_0", "10000000000.0"}, {"+nan", "nan"}, {"-inf", "-inf"}, {"1e+5", "100000.0"},
		{"  -0.0  ", "-0.0"}, {strings.Repeat("9", 400), "inf"},
		{"\U0001d7ce\U0001d7cf", "1.0"}, {"1\x00", "ERR"}, {"1\x7f", "ERR"},
	}
	for _, tt := range tests {
		f, ok := reducer.ParsePyFloat(tt.in)
		got := "ERR"
		if ok {
			got = reducer.Pystr(canon.FloatValue(f))
		}
		if got != tt.want {
			t.Errorf("float(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSafeFloat(t *testing.T) {
	two := new(big.Int).Lsh(big.NewInt(1), 1024)
	half := new(big.Int).Lsh(big.NewInt(1), 970)
	tie := new(big.Int).Sub(two, half) // rounds to 2**1024: Python raises
	below := new(big.Int).Sub(tie, big.NewInt(1))
	tests := []struct {
		in   canon.Value
		want float64
		ok   bool
	}{
		{canon.NullValue(), 0.35, true},
		{canon.BoolValue(true), 1, true},
		{canon.BoolValue(false), 0, true},
		{canon.IntValue(1 << 60), 1 << 60, true},
		{canon.FloatValue(math.NaN()), 0.35, true},
		{canon.FloatValue(math.Inf(-1)), math.Inf(-1), true},
		{canon.StringValue("nan"), 0.35, true},
		{canon.StringValue(" 1_0 "), 10, true},
		{canon.StringValue("x"), 0.35, true},
		{canon.ArrayValue(canon.FloatValue(0.9)), 0.35, true},
		{canon.BigIntValue(below), math.MaxFloat64, true},
		{canon.BigIntValue(tie), 0, false},
		{canon.BigIntValue(new(big.Int).Neg(tie)), 0, false},
	}
	for _, tt := range tests {
		got, ok := reducer.SafeFloat(tt.in, 0.35)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("safe_float(%s) = %v, %v; want %v, %v", reducer.Pystr(tt.in), got, ok, tt.want, tt.ok)
		}
	}
}

func TestPystr(t *testing.T) {
	tests := []struct{ json, want string }{
		{`"plain"`, "plain"},
		{`1`, "1"}, {`-0.0`, "-0.0"}, {`1e16`, "1e+16"}, {`true`, "True"}, {`null`, "None"},
		{`100000000000000000000000000000`, "100000000000000000000000000000"},
		{`["a", "b'c", "d\"e", "it's \"both\"", "\u007f\u0085\u00a0\u2028😀\udb40\udc01\u0000\t\n\r\\", 1.0, Infinity, -Infinity, NaN, true, false, null, 1000000000000000000000000000000, -0.0, 1e16, 1e-05]`,
			`['a', "b'c", 'd"e', 'it\'s "both"', '\x7f\x85\xa0\u2028😀\U000e0001\x00\t\n\r\\', 1.0, inf, -inf, nan, True, False, None, 1000000000000000000000000000000, -0.0, 1e+16, 1e-05]`},
		{`{"k":[1],"é":{}}`, `{'k': [1], 'é': {}}`},
		{`[]`, "[]"},
	}
	for _, tt := range tests {
		if got := reducer.Pystr(mustParse(t, tt.json)); got != tt.want {
			t.Errorf("str(%s) = %s, want %s", tt.json, got, tt.want)
		}
	}
}

func TestPyEqualAndTruthy(t *testing.T) {
	eq := []struct {
		a, b string
		want bool
	}{
		{`1`, `1.0`, true}, {`1`, `true`, true}, {`0`, `false`, true}, {`0.0`, `-0.0`, true},
		{`"1"`, `1`, false}, {`null`, `false`, false}, {`NaN`, `NaN`, false},
		{`[NaN]`, `[NaN]`, true}, {`{"a":[NaN]}`, `{"a":[NaN]}`, true}, {`[NaN]`, `[1.0]`, false},
		{`[1,{"k":true}]`, `[1.0,{"k":1}]`, true}, {`{"a":1}`, `{"a":1,"b":2}`, false},
		{`9007199254740993`, `9007199254740992.0`, false}, {`1e400`, `Infinity`, true},
	}
	for _, tt := range eq {
		if got := reducer.PyEqual(mustParse(t, tt.a), mustParse(t, tt.b)); got != tt.want {
			t.Errorf("%s == %s: %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	for text, want := range map[string]bool{
		`null`: false, `false`: false, `0`: false, `0.0`: false, `-0.0`: false, `""`: false, `[]`: false, `{}`: false,
		`NaN`: true, `1e-300`: true, `"0"`: true, `[0]`: true, `100000000000000000000000`: true,
	} {
		if got := reducer.Truthy(mustParse(t, text)); got != want {
			t.Errorf("bool(%s) = %v, want %v", text, got, want)
		}
	}
}
