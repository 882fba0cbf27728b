package canon_test

import (
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
)

func mustParse(t testing.TB, s string) canon.Value {
	t.Helper()
	v, err := canon.Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return v
}

func encodeText(t testing.TB, v canon.Value) string {
	t.Helper()
	b, err := canon.Encode(v)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return string(b)
}

// vectorList parses a reference vector file with canon itself (so inputs
// keep their exact number types) and returns its "vectors" array.
func vectorList(t *testing.T, name string) []canon.Value {
	t.Helper()
	doc, err := canon.Parse(conformance.ReadFile(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return doc.Field("vectors").Elems()
}

func TestConformanceSuite(t *testing.T) {
	for _, v := range vectorList(t, "canonical_conformance.json") {
		id := v.Field("id").Str()
		t.Run(id, func(t *testing.T) {
			got := hex.EncodeToString([]byte(encodeText(t, v.Field("input"))))
			if want := v.Field("expected_hex").Str(); got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestVectorsCanonicalJSON(t *testing.T) {
	n := 0
	for _, v := range vectorList(t, "vectors.json") {
		if v.Field("id").Str() != "canonical_json_01" {
			continue
		}
		n++
		got := hex.EncodeToString([]byte(encodeText(t, v.Field("input"))))
		if want := v.Field("expected").Str(); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if n != 1 {
		t.Fatalf("canonical_json_01 not found")
	}
}

func extra(t *testing.T) canon.Value {
	t.Helper()
	doc, err := canon.Parse(conformance.ReadFile(t, "extra_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestExtraNumbers(t *testing.T) {
	doc := extra(t)
	for _, v := range doc.Field("numbers").Elems() {
		in := v.Field("json_in").Str()
		t.Run(in, func(t *testing.T) {
			val := mustParse(t, in)
			wantKind := map[string]canon.Kind{"int": canon.Int, "float": canon.Float}[v.Field("python_type").Str()]
			if val.Kind() != wantKind {
				t.Errorf("kind %v, want %v", val.Kind(), wantKind)
			}
			if got, want := encodeText(t, val), v.Field("canonical_out").Str(); got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
	for _, v := range doc.Field("numbers_rejected").Elems() {
		in := v.Field("json_in").Str()
		t.Run("rejected/"+in, func(t *testing.T) {
			val := mustParse(t, in) // parses, as in Python
			if _, err := canon.Encode(val); !errors.Is(err, canon.ErrNonFinite) {
				t.Errorf("Encode err = %v, want ErrNonFinite", err)
			}
		})
	}
}

func TestExtraStrings(t *testing.T) {
	for _, v := range extra(t).Field("strings").Elems() {
		t.Run(v.Field("id").Str(), func(t *testing.T) {
			got := encodeText(t, mustParse(t, v.Field("json_in").Str()))
			if want := v.Field("canonical_text").Str(); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if hex.EncodeToString([]byte(got)) != v.Field("canonical_hex").Str() {
				t.Errorf("hex mismatch")
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		``, ` `, `{`, `[1,]`, `{"a":1,}`, `01`, `1.`, `.5`, `1e`, `-`, `+1`,
		`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`, `"a` + "\x01" + `"`, "\"\xff\"",
		"\"\xed\xa0\x80\"", `"\x"`, `"\u12"`, `nul`, `True`, `1 2`, `{"a" 1}`,
		`{a:1}`, "\ufeff{}", `[1]x`, `'a'`, `infinity`, `-NaN`,
	} {
		if v, err := canon.Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) = %v, want error", in, v)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	for in, want := range map[string]string{
		" {\"b\" : [ 1 , 2 ] ,\n\"a\":\t-0 } \r\n": `{"a":0,"b":[1,2]}`,
		`"\ud83d\ude00"`:                  "\"\U0001F600\"",
		`"\u00E9\/"`:                      `"é/"`,
		`-1e400`:                          "", // parses; encode fails
		`1e-400`:                          `0.0`,
		`-1e-400`:                         `-0.0`,
		`123456789012345678901234567890`:  `123456789012345678901234567890`,
		`-9223372036854775808`:            `-9223372036854775808`,
		`-9223372036854775809`:            `-9223372036854775809`,
		`9223372036854775807`:             `9223372036854775807`,
		`{"a":1,"a":{"x":1},"b":2,"a":3}`: `{"a":3,"b":2}`,
		`"\u0000"`:                        `"\u0000"`,
	} {
		v := mustParse(t, in)
		got, err := canon.Encode(v)
		if want == "" {
			if err == nil {
				t.Errorf("Encode(%q) succeeded", in)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestLimits(t *testing.T) {
	deep := ""
	for range 300 {
		deep += "["
	}
	for range 300 {
		deep += "]"
	}
	_, err := canon.Parse([]byte(deep))
	if !errors.Is(err, canon.ErrTooLarge) {
		t.Errorf("deep: err = %v, want ErrTooLarge", err)
	}
	if _, err := (canon.Limits{MaxDepth: 400}).Parse([]byte(deep)); err != nil {
		t.Errorf("deep with MaxDepth 400: %v", err)
	}
	if _, err := (canon.Limits{MaxSize: 4}).Parse([]byte(`"hello"`)); !errors.Is(err, canon.ErrTooLarge) {
		t.Errorf("size: err = %v", err)
	}
	long := make([]byte, 4302)
	for i := range long {
		long[i] = '7'
	}
	if _, err := canon.Parse(long); !errors.Is(err, canon.ErrTooLarge) {
		t.Errorf("digits: err = %v", err)
	}
}

// TestFloatRepr checks the float text against properties of Python's repr:
// it round-trips and uses the notation SPEC.md §4.3 prescribes.
func TestFloatRepr(t *testing.T) {
	cases := map[float64]string{
		1: "1.0", 100: "100.0", 1e15: "1000000000000000.0", 1e16: "1e+16",
		0.0001: "0.0001", 0.00001: "1e-05", 123.5: "123.5", 1.5e300: "1.5e+300",
		5e-324: "5e-324", math.Copysign(0, -1): "-0.0", -2.5e-05: "-2.5e-05",
		1.2345678901234567e+19: "1.2345678901234567e+19", 9999999999999998: "9999999999999998.0",
	}
	for f, want := range cases {
		got, err := canon.AppendFloat(nil, f)
		if err != nil || string(got) != want {
			t.Errorf("%v: got %s %v, want %s", f, got, err, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := math.Float64frombits(r.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		b, err := canon.AppendFloat(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		g, err := strconv.ParseFloat(string(b), 64)
		if err != nil || g != f {
			t.Fatalf("%v -> %s does not round-trip", f, b)
		}
		v := mustParse(t, string(b))
		if v.Kind() != canon.Float {
			t.Fatalf("%s parsed as %v", b, v.Kind())
		}
	}
}

func TestBuildersAndAccessors(t *testing.T) {
	var b canon.ObjectBuilder
	b.Set("z", canon.IntValue(1)).Set("a", canon.StringValue("x")).Set("z", canon.FloatValue(2))
	o := b.Value()
	if got := encodeText(t, o); got != `{"a":"x","z":2.0}` {
		t.Errorf("builder: %s", got)
	}
	o2 := o.With("m", canon.NullValue()).With("a", canon.BoolValue(true)).Without("z")
	if got := encodeText(t, o2); got != `{"a":true,"m":null}` {
		t.Errorf("With/Without: %s", got)
	}
	if got := encodeText(t, o); got != `{"a":"x","z":2.0}` {
		t.Errorf("original changed: %s", got)
	}
}

func TestIndentLikePython(t *testing.T) {
	v := canon.OrderedObject(
		canon.Member{Key: "z", Value: canon.IntValue(1)},
		canon.Member{Key: "a", Value: canon.ArrayValue(canon.StringValue("é"), canon.FloatValue(0.5))},
		canon.Member{Key: "e", Value: canon.ArrayValue()},
		canon.Member{Key: "o", Value: canon.ObjectValue()},
		canon.Member{Key: "n", Value: canon.ObjectValue(canon.Member{Key: "k", Value: canon.BoolValue(true)})},
	)
	got, err := canon.AppendIndent(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	// json.dumps({"z":1,"a":["é",0.5],"e":[],"o":{},"n":{"k":True}}, indent=2, ensure_ascii=False)
	want := "{\n  \"z\": 1,\n  \"a\": [\n    \"é\",\n    0.5\n  ],\n  \"e\": [],\n  \"o\": {},\n  \"n\": {\n    \"k\": true\n  }\n}"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if c := encodeText(t, v); c != `{"a":["é",0.5],"e":[],"n":{"k":true},"o":{},"z":1}` {
		t.Errorf("canonical of ordered object: %s", c)
	}
	if v.Field("a").Len() != 2 || !canon.Equal(v, mustParse(t, string(got))) {
		t.Errorf("ordered object accessors")
	}
}
