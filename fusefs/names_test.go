package fusefs_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/backpack-field/backpack/fusefs"
)

func TestEscapeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"door_01", "door_01"},
		{"", "%"},
		{".", "%2E"},
		{"..", "%2E."},
		{".hidden", "%2Ehidden"},
		{"a/b", "a%2Fb"},
		{"50%", "50%25"},
		{"tab\there", "tab%09here"},
		{"urn:x:y", "urn:x:y"},
		{"café ☕", "café ☕"},
		{"bad\xffutf8", "bad%FFutf8"},
	} {
		got := fusefs.EscapeName(tc.in)
		if got != tc.want {
			t.Errorf("EscapeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := fusefs.UnescapeName(got)
		if err != nil || back != tc.in {
			t.Errorf("UnescapeName(%q) = %q, %v", got, back, err)
		}
	}
	long := strings.Repeat("ü", 300)
	got := fusefs.EscapeName(long)
	if len(got) > 240 || !utf8.ValidString(got) || !strings.Contains(got, "%~") {
		t.Fatalf("long name: %d bytes %q", len(got), got)
	}
	if fusefs.EscapeName(long+"x") == got {
		t.Fatal("two long names share an escaped name")
	}
	if _, err := fusefs.UnescapeName(got); err == nil {
		t.Fatal("hashed long name unescaped")
	}
	for _, bad := range []string{"", "%2", "%zz", "%2e", "a/b", ".x"} {
		if _, err := fusefs.UnescapeName(bad); err == nil {
			t.Errorf("UnescapeName(%q) accepted", bad)
		}
	}
}

func FuzzEscapeName(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a/b", "%", "%25", "x\x00y", strings.Repeat("a", 300), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := fusefs.EscapeName(s)
		if e == "" || e == "." || e == ".." || strings.ContainsAny(e, "/\x00") || strings.HasPrefix(e, ".") || len(e) > 255 {
			t.Fatalf("EscapeName(%q) = %q is not a safe name", s, e)
		}
		if back, err := fusefs.UnescapeName(e); err == nil && back != s {
			t.Fatalf("UnescapeName(EscapeName(%q)) = %q", s, back)
		} else if err != nil && !strings.Contains(e, "%~") {
			t.Fatalf("UnescapeName(%q): %v", e, err)
		}
		// Anything UnescapeName accepts round-trips.
		if back, err := fusefs.UnescapeName(s); err == nil && fusefs.EscapeName(back) != s {
			t.Fatalf("UnescapeName(%q) = %q does not escape back", s, back)
		}
	})
}
