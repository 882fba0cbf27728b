package log_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	bplog "github.com/backpack-field/backpack/log"
)

func parseDoc(t *testing.T, name string) canon.Value {
	t.Helper()
	v, err := canon.Parse(conformance.ReadFile(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func vector(t *testing.T, id string) canon.Value {
	t.Helper()
	for _, v := range parseDoc(t, "vectors.json").Field("vectors").Elems() {
		if v.Field("id").Str() == id {
			return v
		}
	}
	t.Fatalf("vector %s not found", id)
	return canon.Value{}
}

func TestVectorEventID(t *testing.T) {
	v := vector(t, "event_id_derivation_01")
	got, err := bplog.ComputeID(v.Field("input"))
	if err != nil || got != v.Field("expected").Str() {
		t.Errorf("got %s %v, want %s", got, err, v.Field("expected").Str())
	}
}

func TestVectorKeyID(t *testing.T) {
	v := vector(t, "key_id_derivation_01")
	pub, _ := hex.DecodeString(v.Field("input").Str())
	if got := bplog.KeyID(pub); got != v.Field("expected").Str() {
		t.Errorf("got %s, want %s", got, v.Field("expected").Str())
	}
}

func TestVectorSignature(t *testing.T) {
	v := vector(t, "ed25519_sign_verify_01")
	in := v.Field("input")
	pub, _ := base64.StdEncoding.DecodeString(in.Field("public_key_b64").Str())
	sig, _ := base64.StdEncoding.DecodeString(v.Field("expected").Str())
	// sign_event adds actor_key_id to the message before signing.
	msg := canon.MustEncode(in.Field("message").With("actor_key_id", in.Field("key_id")))
	if !ed25519.Verify(pub, msg, sig) {
		t.Errorf("signature does not verify over %s", msg)
	}
	if ed25519.Verify(pub, canon.MustEncode(in.Field("message")), sig) {
		t.Errorf("signature unexpectedly verifies without actor_key_id")
	}
}

func testKey(t *testing.T, name string) bplog.PrivateKey {
	t.Helper()
	for _, k := range parseDoc(t, "extra_vectors.json").Field("test_keys").Elems() {
		if k.Field("name").Str() == name {
			pk, err := bplog.KeyFromSeedB64(k.Field("private_key_b64").Str())
			if err != nil {
				t.Fatal(err)
			}
			if pk.ID != k.Field("key_id").Str() {
				t.Fatalf("key id %s, want %s", pk.ID, k.Field("key_id").Str())
			}
			return pk
		}
	}
	t.Fatalf("test key %s not found", name)
	return bplog.PrivateKey{}
}

func TestEventSigningVectors(t *testing.T) {
	for _, v := range parseDoc(t, "extra_vectors.json").Field("event_signing").Elems() {
		t.Run(v.Field("id").Str(), func(t *testing.T) {
			k := testKey(t, v.Field("key").Str())
			line := v.Field("ndjson_line").Str()
			e, err := bplog.Parse([]byte(line))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := e.SignedBytes()
			if err != nil || string(sb) != v.Field("signed_bytes_text").Str() {
				t.Errorf("signed bytes %s", sb)
			}
			if err := e.VerifySignature(k.Public()); err != nil {
				t.Errorf("verify: %v", err)
			}
			rule, want, err := e.CheckID()
			if err != nil {
				t.Fatal(err)
			}
			switch v.Field("id").Str() {
			case "profile_rule":
				if rule != bplog.IDProfile {
					t.Errorf("rule %v", rule)
				}
				// Sealing the unsigned body reproduces the line exactly.
				_, got, err := k.Signer().Seal(v.Field("unsigned_body"))
				if err != nil || string(got) != line {
					t.Errorf("Seal:\n got %s\nwant %s", got, line)
				}
				pre, _ := canon.Encode(e.Value.Without("event_id", "sig"))
				if string(pre) != v.Field("id_preimage").Str() {
					t.Errorf("preimage %s", pre)
				}
			case "legacy_rule":
				if rule != bplog.IDLegacy || want == e.ID {
					t.Errorf("rule %v want %s", rule, want)
				}
			}
		})
	}
}

// readAll reads a log with Reader and parses every usable line.
func readAll(t *testing.T, path string) ([]canon.Value, []*bplog.Line) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bplog.NewReader(f)
	var vals []canon.Value
	var bad []*bplog.Line
	for r.Next() {
		l := r.Line()
		if l.Err != nil {
			c := *l
			bad = append(bad, &c)
			continue
		}
		v, err := bplog.ParseLine(l.Text)
		if err != nil {
			c := *l
			c.Err = err
			bad = append(bad, &c)
			continue
		}
		vals = append(vals, v)
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return vals, bad
}

func TestReferenceBackpacks(t *testing.T) {
	exp := parseDoc(t, "expected.json")
	for _, name := range []string{"reference_backpack", "demo_backpack"} {
		t.Run(name, func(t *testing.T) {
			want := exp.Field(name)
			dir := conformance.Path(t, name)
			vals, bad := readAll(t, filepath.Join(dir, "events", "events.ndjson"))
			if len(bad) != 0 {
				t.Fatalf("unusable lines: %v", bad[0].Err)
			}
			if n, _ := want.Field("event_count").Int64(); int64(len(vals)) != n {
				t.Fatalf("%d events, want %d", len(vals), n)
			}
			keys, err := os.ReadFile(filepath.Join(dir, "identity", "keys.json"))
			if err != nil {
				t.Fatal(err)
			}
			reg, err := bplog.ParseRegistry(keys)
			if err != nil {
				t.Fatal(err)
			}
			chains := bplog.NewChains()
			valid, profile := 0, true
			for i, v := range vals {
				e, err := bplog.NewEvent(v)
				if err != nil {
					t.Fatal(err)
				}
				pub, err := reg.Resolve(e.KeyID)
				if err == nil && e.VerifySignature(pub) == nil {
					valid++
				}
				if rule, _, _ := e.CheckID(); rule != bplog.IDProfile {
					profile = false
				}
				chains.Add(e, i+1, bplog.ContentHash(canon.MustEncode(v)))
				if i == 0 && e.ID != want.Field("first_event_id").Str() {
					t.Errorf("first id %s", e.ID)
				}
			}
			if n, _ := want.Field("signatures_valid").Int64(); int64(valid) != n {
				t.Errorf("valid signatures %d, want %d", valid, n)
			}
			if profile != want.Field("event_ids_match_profile_rule").Bool() {
				t.Errorf("profile rule %v", profile)
			}
			rep := chains.Finish()
			if n, _ := want.Field("fork_count").Int64(); int64(len(rep.Forks)) != n || !rep.OK() {
				t.Errorf("forks %v breaks %v", rep.Forks, rep.Breaks)
			}
			if n, _ := want.Field("fork_count").Int64(); int64(bplog.ReferenceForkCount(vals)) != n {
				t.Errorf("reference fork count")
			}
			for actor, ok := range bplog.ReferenceChains(vals) {
				if want.Field("causal_chain_valid_by_actor").Field(actor).Bool() != ok {
					t.Errorf("chain %s: %v", actor, ok)
				}
			}
		})
	}
}

func TestReaderLines(t *testing.T) {
	in := "a\r\nb\rc\n\n  \x1c\t\n\xc2\xa0d\xe2\x80\x83\n\xff\nlast"
	r := bplog.NewReader(strings.NewReader(in))
	type got struct {
		n     int
		text  string
		term  bool
		bad   bool
		start int64
	}
	var lines []got
	for r.Next() {
		l := r.Line()
		lines = append(lines, got{l.Number, string(l.Text), l.Terminated, l.Err != nil, l.Offset})
	}
	want := []got{
		{1, "a", true, false, 0}, {2, "b", true, false, 3}, {3, "c", true, false, 5},
		{6, "d", true, false, 13}, {7, "\xff", true, true, 20}, {8, "last", false, false, 22},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %+v", lines)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, lines[i], want[i])
		}
	}
}

func TestReaderLongLineAndBufferEdges(t *testing.T) {
	long := strings.Repeat("x", bplog.MaxLineSize+10)
	in := "{}\r" + long + "\r\n{\"a\":1}\n"
	// A one-byte reader exercises every buffer boundary, including \r at
	// the end of a read.
	r := bplog.NewReader(&oneByte{strings.NewReader("{}\r\n{}\r{}\n")})
	n := 0
	for r.Next() {
		n++
		if string(r.Line().Text) != "{}" {
			t.Errorf("text %q", r.Line().Text)
		}
	}
	if n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
	r = bplog.NewReader(strings.NewReader(in))
	var errs []error
	for r.Next() {
		errs = append(errs, r.Line().Err)
	}
	if len(errs) != 3 || !errors.Is(errs[1], bplog.ErrLineTooLong) || errs[0] != nil || errs[2] != nil {
		t.Errorf("errs %v", errs)
	}
}

type oneByte struct{ r *strings.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func writeLog(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAppenderLock(t *testing.T) {
	p := writeLog(t, "")
	a, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{}); !errors.Is(err, bplog.ErrLocked) {
		t.Fatalf("second appender: err = %v, want ErrLocked", err)
	}
	a.Close()
	b, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{})
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	b.Close()
}

func TestAppenderTornTail(t *testing.T) {
	complete := `{"event_id":"evt_1","type":"X","actor":"a"}` + "\n"
	t.Run("torn", func(t *testing.T) {
		p := writeLog(t, complete+`{"event_id":"evt_2","ty`)
		if _, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{}); !errors.Is(err, bplog.ErrTornTail) {
			t.Fatalf("without SaveTorn: %v", err)
		}
		if b, _ := os.ReadFile(p); !strings.HasSuffix(string(b), "ty") {
			t.Fatalf("file changed without a place to keep the tail")
		}
		var saved []byte
		var at int64
		a, rep, err := bplog.OpenAppender(p, bplog.AppenderOptions{SaveTorn: func(off int64, b []byte) error {
			at, saved = off, append([]byte(nil), b...)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if rep == nil || rep.Completed || string(saved) != `{"event_id":"evt_2","ty` || at != int64(len(complete)) {
			t.Fatalf("repair %+v saved %q at %d", rep, saved, at)
		}
		if b, _ := os.ReadFile(p); string(b) != complete {
			t.Fatalf("after repair: %q", b)
		}
		if err := a.Append([]byte(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != complete+`{"x":1}`+"\n" {
			t.Fatalf("after append: %q", b)
		}
	})
	t.Run("missing newline", func(t *testing.T) {
		p := writeLog(t, complete+`{"event_id":"evt_2"}`)
		a, rep, err := bplog.OpenAppender(p, bplog.AppenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if rep == nil || !rep.Completed {
			t.Fatalf("repair %+v", rep)
		}
		if b, _ := os.ReadFile(p); string(b) != complete+`{"event_id":"evt_2"}`+"\n" {
			t.Fatalf("after repair: %q", b)
		}
	})
	t.Run("changed behind its back", func(t *testing.T) {
		p := writeLog(t, complete)
		a, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(complete)
		f.Close()
		var ce *bplog.ChangedError
		if err := a.Append([]byte(`{}`)); !errors.As(err, &ce) {
			t.Fatalf("err = %v", err)
		}
		if b, _ := os.ReadFile(p); !bytes.Equal(b, []byte(complete+complete)) {
			t.Fatalf("file %q", b)
		}
	})
}
