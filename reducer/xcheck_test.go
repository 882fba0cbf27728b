package reducer_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

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
	cases, steps, bad := 0, 0, 0
	for sc.Scan() {
		var c struct {
			Text    string   `json:"text"`
			Entries int      `json:"entries"`
			Steps   []string `json:"steps"`
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
		for i, want := range c.Steps {
			steps++
			var got string
			if err := s.Apply(events[i]); err != nil {
				var ae *reducer.ApplyError
				if !errors.As(err, &ae) {
					t.Fatalf("case %d: Apply error %T %v", cases, err, err)
				}
				got = "!apply"
			} else if h, err := s.StateHash(); err != nil {
				got = "!hash"
			} else {
				got = h
			}
			if got != want && !(got == "!apply" && strings.HasPrefix(want, "!apply")) {
				bad++
				if bad <= 10 {
					t.Errorf("case %d step %d: got %s, want %s\n%q", cases, i, got, want, c.Text)
				}
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cases, %d steps, %d mismatches", cases, steps, bad)
}
