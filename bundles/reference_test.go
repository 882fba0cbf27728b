package bundles_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
)

// deltaVectors returns extra_vectors.json's delta_export section.
func deltaVectors(t testing.TB) canon.Value {
	t.Helper()
	v, err := canon.Parse(conformance.ReadFile(t, "extra_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := v.Field("delta_export")
	if d.Kind() != canon.Object {
		t.Fatal("extra_vectors.json has no delta_export section")
	}
	return d
}

func splitLines(s string) [][]byte {
	var out [][]byte
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		out = append(out, []byte(l))
	}
	return out
}

// TestReferenceVectors reproduces the reference's export_delta bundles
// byte for byte and reads them back.
func TestReferenceVectors(t *testing.T) {
	d := deltaVectors(t)
	events := splitLines(d.Field("source_events_ndjson").Str())
	keys := d.Field("source_keys_json").Field("keys")
	at := d.Field("exported_at_pinned").Str()
	since := d.Field("since_hash").Str()
	after := -1
	for i, e := range events {
		if bytes.Contains(e, []byte(`"event_id":"`+since+`"`)) {
			after = i
			break
		}
	}
	if after < 0 {
		t.Fatalf("since_hash %s is not among the source events", since)
	}
	// The unknown-hash vector exports everything and records the hash it
	// was asked for.
	unknown, err := canon.Parse([]byte(strings.SplitN(d.Field("bundle_since_unknown_hash").Str(), "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		want   string
		events [][]byte
		since  canon.Value
	}{
		{"bundle_all", d.Field("bundle_all").Str(), events, canon.NullValue()},
		{"bundle_since", d.Field("bundle_since").Str(), events[after+1:], canon.StringValue(since)},
		{"bundle_since_unknown_hash", d.Field("bundle_since_unknown_hash").Str(), events, unknown.Field("since_hash")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				t.Fatal("vector missing")
			}
			var buf bytes.Buffer
			if err := bundles.EncodeReference(&buf, tc.events, keys, tc.since, at); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Fatalf("EncodeReference:\n got %q\nwant %q", buf.String(), tc.want)
			}
			if bundles.Sniff(buf.Bytes()) != bundles.KindReference {
				t.Errorf("Sniff = %v", bundles.Sniff(buf.Bytes()))
			}
			rb, err := bundles.DecodeReference(strings.NewReader(tc.want), bundles.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rb.Rejected) != 0 {
				t.Errorf("rejected: %v", rb.Rejected)
			}
			if len(rb.Events) != len(tc.events) {
				t.Fatalf("decoded %d events, want %d", len(rb.Events), len(tc.events))
			}
			for i := range rb.Events {
				if !bytes.Equal(rb.Events[i], tc.events[i]) || rb.EventLines[i] != i+2 {
					t.Errorf("event %d (line %d): %s, want %s", i, rb.EventLines[i], rb.Events[i], tc.events[i])
				}
			}
			if !canon.Equal(rb.Keys, keys) || !canon.Equal(rb.SinceHash, tc.since) || rb.ExportedAt != at {
				t.Errorf("header fields: keys %v since %v at %q", rb.Keys, rb.SinceHash, rb.ExportedAt)
			}
			if n, ok := rb.EventCount.Int64(); !ok || n != int64(len(tc.events)) {
				t.Errorf("event_count %v", rb.EventCount)
			}
		})
	}
}

func TestEncodeReferenceEdges(t *testing.T) {
	t.Run("missing keys.json writes []", func(t *testing.T) {
		var buf bytes.Buffer
		if err := bundles.EncodeReference(&buf, nil, canon.Value{}, canon.NullValue(), "2026-01-01T00:00:00+00:00"); err != nil {
			t.Fatal(err)
		}
		want := `{"event_count":0,"exported_at":"2026-01-01T00:00:00+00:00","keys":[],"since_hash":null,"type":"provara_delta_v1"}` + "\n"
		if buf.String() != want {
			t.Fatalf("got %q, want %q", buf.String(), want)
		}
	})
	t.Run("non-canonical source line comes out canonical", func(t *testing.T) {
		var buf bytes.Buffer
		if err := bundles.EncodeReference(&buf, [][]byte{[]byte(`{ "b": 1e2, "a": [1, 2.50] }`)}, canon.ArrayValue(), canon.StringValue("evt_x"), "t"); err != nil {
			t.Fatal(err)
		}
		if _, events, _ := strings.Cut(buf.String(), "\n"); events != `{"a":[1,2.5],"b":100.0}`+"\n" {
			t.Fatalf("events: %q", events)
		}
	})
	for name, args := range map[string]struct {
		events      [][]byte
		keys, since canon.Value
	}{
		"keys not an array":   {nil, canon.StringValue("k"), canon.NullValue()},
		"since_hash a number": {nil, canon.ArrayValue(), canon.IntValue(3)},
		"event not JSON":      {[][]byte{[]byte("{")}, canon.ArrayValue(), canon.NullValue()},
		"event not an object": {[][]byte{[]byte("[]")}, canon.ArrayValue(), canon.NullValue()},
		"event with NaN":      {[][]byte{[]byte(`{"a":NaN}`)}, canon.ArrayValue(), canon.NullValue()},
	} {
		t.Run(name, func(t *testing.T) {
			if err := bundles.EncodeReference(&bytes.Buffer{}, args.events, args.keys, args.since, "t"); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

const refHeader = `{"event_count":2,"exported_at":"2026-01-02T03:04:05+00:00","keys":[],"since_hash":null,"type":"provara_delta_v1"}`

// TestDecodeReferenceReading checks the reference's reading rules and
// where backpack reports instead of dropping.
func TestDecodeReferenceReading(t *testing.T) {
	ev1 := `{"actor":"a","event_id":"evt_1"}`
	ev2 := `{"actor":"b","event_id":"evt_2"}`
	for _, tc := range []struct {
		name     string
		in       string
		events   []string
		lines    []int
		rejected []int // line numbers
	}{
		{"plain", refHeader + "\n" + ev1 + "\n" + ev2 + "\n", []string{ev1, ev2}, []int{2, 3}, nil},
		{"no final newline", refHeader + "\n" + ev1 + "\n" + ev2, []string{ev1, ev2}, []int{2, 3}, nil},
		{"blank lines and outer whitespace", "\n \u00a0\n" + refHeader + "\n\n \t\n" + ev1 + "\n\u3000\n" + ev2 + "\n\n\x1c", []string{ev1, ev2}, []int{6, 8}, nil},
		{"CRLF", refHeader + "\r\n" + ev1 + "\r\n" + ev2 + "\r\n", []string{ev1, ev2}, []int{2, 3}, nil},
		{"non-canonical lines re-encoded", refHeader + "\n" + `{"event_id": "evt_1", "actor": "a"}` + "\n", []string{ev1}, []int{2}, nil},
		{"bad lines reported", refHeader + "\n" + ev1 + "\n{oops\n[1]\n" + `{"x":NaN}` + "\n\u00a0" + ev2 + "\n" + ev2 + "\n", []string{ev1, ev2}, []int{2, 7}, []int{3, 4, 5, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb, err := bundles.DecodeReference(strings.NewReader(tc.in), bundles.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range rb.Events {
				got = append(got, string(e))
			}
			if strings.Join(got, "\n") != strings.Join(tc.events, "\n") {
				t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.events, "\n"))
			}
			if len(rb.EventLines) != len(tc.lines) {
				t.Fatalf("lines %v, want %v", rb.EventLines, tc.lines)
			}
			for i := range tc.lines {
				if rb.EventLines[i] != tc.lines[i] {
					t.Errorf("lines %v, want %v", rb.EventLines, tc.lines)
				}
			}
			var rej []int
			for _, r := range rb.Rejected {
				rej = append(rej, r.Line)
				if !errors.Is(r, bundles.ErrCorrupt) {
					t.Errorf("rejected line %d: %v does not match ErrCorrupt", r.Line, r)
				}
				if !strings.HasPrefix(tc.in[r.Offset:], strings.Split(tc.in[r.Offset:], "\n")[0]) {
					t.Errorf("offset %d is not a line start", r.Offset)
				}
			}
			if len(rej) != len(tc.rejected) {
				t.Fatalf("rejected lines %v, want %v (%v)", rej, tc.rejected, rb.Rejected)
			}
			for i := range rej {
				if rej[i] != tc.rejected[i] {
					t.Errorf("rejected lines %v, want %v", rej, tc.rejected)
				}
			}
		})
	}
}

func TestDecodeReferenceHostile(t *testing.T) {
	ev := `{"actor":"a","event_id":"evt_1"}`
	for _, tc := range []struct {
		name  string
		in    string
		lim   bundles.Limits
		want  error
		line  int
		inMsg string
	}{
		{"empty", "", bundles.Limits{}, bundles.ErrCorrupt, 0, "empty"},
		{"only whitespace", " \n\t\n\u2028", bundles.Limits{}, bundles.ErrCorrupt, 0, "empty"},
		{"not UTF-8", refHeader + "\n" + `{"a":"` + "\xff" + `"}` + "\n", bundles.Limits{}, bundles.ErrCorrupt, 0, "UTF-8"},
		{"BOM", "\ufeff" + refHeader + "\n", bundles.Limits{}, bundles.ErrBadHeader, 1, ""},
		{"header not JSON", "hello\n" + ev + "\n", bundles.Limits{}, bundles.ErrBadHeader, 1, ""},
		{"header an event", ev + "\n" + ev + "\n", bundles.Limits{}, bundles.ErrBadHeader, 1, "provara_delta_v1"},
		{"header another type", `{"type":"provara_delta_v2"}` + "\n", bundles.Limits{}, bundles.ErrFormatVersion, 1, "provara_delta_v2"},
		{"header an array", "[]\n", bundles.Limits{}, bundles.ErrBadHeader, 1, "not an object"},
		{"keys not a list", `{"keys":{},"type":"provara_delta_v1"}` + "\n", bundles.Limits{}, bundles.ErrBadHeader, 1, "keys"},
		{"since_hash a number", `{"since_hash":1,"type":"provara_delta_v1"}` + "\n", bundles.Limits{}, bundles.ErrBadHeader, 1, "since_hash"},
		{"header after blank lines", "\n\n[]\n", bundles.Limits{}, bundles.ErrBadHeader, 3, ""},
		{"a backpack bundle", "\x28\xb5\x2f\xfd\x00\x00", bundles.Limits{}, bundles.ErrNotBundle, 0, "use Decode"},
		{"too large", refHeader + "\n" + ev + "\n", bundles.Limits{MaxDecompressed: 100}, bundles.ErrTooLarge, 0, "larger than"},
		{"header too long", refHeader + "\n", bundles.Limits{MaxHeader: 50}, bundles.ErrTooLarge, 1, "header longer"},
		{"line too long", refHeader + "\n" + ev + "\n", bundles.Limits{MaxLine: 10}, bundles.ErrTooLarge, 2, "event line longer"},
		{"too many events", refHeader + "\n" + ev + "\n" + ev + "\n" + ev + "\n", bundles.Limits{MaxEvents: 2}, bundles.ErrTooLarge, 4, "more than the limit of 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb, err := bundles.DecodeReference(strings.NewReader(tc.in), tc.lim)
			if err == nil {
				t.Fatalf("accepted: %+v", rb)
			}
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			fe, ok := errors.AsType[*bundles.FormatError](err)
			if !ok {
				t.Fatalf("%v is not a *FormatError", err)
			}
			if tc.line != 0 && fe.Line != tc.line {
				t.Errorf("line %d, want %d", fe.Line, tc.line)
			}
			if !strings.Contains(err.Error(), tc.inMsg) {
				t.Errorf("err = %v, want it to mention %q", err, tc.inMsg)
			}
		})
	}
}

// TestReferenceToBackpack carries a reference delta's events into a
// backpack bundle and back, unchanged.
func TestReferenceToBackpack(t *testing.T) {
	events, fr := realistic(t, 30, 9)
	var ref bytes.Buffer
	if err := bundles.EncodeReference(&ref, events, canon.ArrayValue(), canon.NullValue(), "2026-03-02T00:00:00+00:00"); err != nil {
		t.Fatal(err)
	}
	rb, err := bundles.DecodeReference(&ref, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.Decode(bytes.NewReader(encode(t, rb.Events, fr)), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.Join(b.Events, []byte("\n")), bytes.Join(events, []byte("\n"))) {
		t.Fatal("events changed on the way")
	}
}
