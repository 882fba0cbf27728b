package reducer_test

import (
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

// readLog parses NDJSON text the way the reference's iter_events reads
// events.ndjson (SPEC §3.2): universal newlines (\n, \r\n and a lone \r
// end a line), Python str.strip() whitespace, empty lines skipped, lines
// that do not parse skipped, non-object values kept.
func readLog(text string) []canon.Value {
	var out []canon.Value
	for len(text) > 0 {
		i := strings.IndexAny(text, "\r\n")
		line := text
		if i < 0 {
			text = ""
		} else {
			line = text[:i]
			if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
				i++
			}
			text = text[i+1:]
		}
		line = strings.TrimFunc(line, isPySpace)
		if line == "" {
			continue
		}
		v, err := canon.Parse([]byte(line))
		if err != nil {
			continue
		}
		out = append(out, v)
	}
	return out
}

// isPySpace reports whether Python's str.isspace is true for r.
func isPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ',
		0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// replay applies events to a new State.
func replay(tb testing.TB, events []canon.Value) *reducer.State {
	tb.Helper()
	s := reducer.New()
	for _, ev := range events {
		if err := s.Apply(ev); err != nil {
			tb.Fatalf("Apply: %v", err)
		}
	}
	return s
}

func mustParse(tb testing.TB, text string) canon.Value {
	tb.Helper()
	v, err := canon.Parse([]byte(text))
	if err != nil {
		tb.Fatalf("parse %q: %v", text, err)
	}
	return v
}

func mustHash(tb testing.TB, s *reducer.State) string {
	tb.Helper()
	h, err := s.StateHash()
	if err != nil {
		tb.Fatalf("StateHash: %v", err)
	}
	return h
}
