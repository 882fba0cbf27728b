package reducer_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

// TestCrossCheckCorpus replays a corpus of logs for which the Python
// reference recorded the state hash after every parsed entry, when
// BACKPACK_REDUCER_XCHECK names such a file (JSON lines of {"text",
// "entries", "steps"}; a step is a hash, "!hash" when hashing raised or
// "!apply <exception>" when applying raised). The corpus generator lives
// outside the repository.
func TestCrossCheckCorpus(t *testing.T) {
	path := os.Getenv("BACKPACK_REDUCER_XCHECK")
	if path == "" {
		t.Skip("BACKPACK_REDUCER_XCHECK not set")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	cases, steps, bad, resumed := 0, 0, 0, 0
	for sc.Scan() {
		var c struct {
			Text    string   `json:"text"`
			Entries int      `json:"entries"`
			Steps   []string `json:"steps"`
			Cut     *int     `json:"cut"`
			Resume  []string `json:"resume"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		cases++
		events := readLog(c.Text)
		if len(events) != c.Entries {
			bad++
			if bad <= 10 {
				t.Errorf("case %d: %d entries, reference read %d\n%q", cases, len(events), c.Entries, c.Text)
			}
			continue
		}
		s := reducer.New()
		if i, ok := compareSteps(s, events, c.Steps); !ok {
			bad++
			if bad <= 10 {
				t.Errorf("case %d step %d differs\n%q", cases, i, c.Text)
			}
		}
		steps += len(c.Steps)
		if c.Cut == nil || *c.Cut < 0 {
			continue
		}
		// Resume from a reference checkpoint of the prefix, lossily.
		prefix := replay(t, events[:*c.Cut])
		pre, err := prefix.PreimageValue()
		if err != nil {
			t.Fatalf("case %d: preimage at cut %d: %v", cases, *c.Cut, err)
		}
		r, err := reducer.FromReferenceCheckpoint(pre)
		if err != nil {
			t.Fatal(err)
		}
		resumed++
		steps += len(c.Resume)
		if i, ok := compareSteps(r, events[*c.Cut:], c.Resume); !ok {
			bad++
			if bad <= 10 {
				t.Errorf("case %d: resume at %d, step %d differs\n%q", cases, *c.Cut, i, c.Text)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cases (%d resumed from a checkpoint), %d steps, %d mismatches", cases, resumed, steps, bad)
}

// compareSteps applies events to s and compares the outcome after each with
// the reference's; it returns the first differing step.
func compareSteps(s *reducer.State, events []canon.Value, want []string) (int, bool) {
	for i, w := range want {
		var got string
		if err := s.Apply(events[i]); err != nil {
			var ae *reducer.ApplyError
			if !errors.As(err, &ae) {
				return i, false
			}
			got = "!apply"
		} else if h, err := s.StateHash(); err != nil {
			got = "!hash"
		} else {
			got = h
		}
		if got != w && !(got == "!apply" && strings.HasPrefix(w, "!apply")) {
			return i, false
		}
	}
	return 0, true
}
