package radiosync_test

import (
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosim"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// TestFrontierPages: a frontier of 200 actors goes in several pages,
// each fitting a frame; together they cover every actor hash and name
// every actor; without one of them the set is incomplete.
func TestFrontierPages(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", filepath.Join(t.TempDir(), "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	for _, tc := range []struct {
		actors, minPages int
		truncated        bool
	}{{0, 1, false}, {10, 1, false}, {60, 4, false}, {200, 10, false}, {1000, 64, true}} {
		s, err := radiosim.New(t.Context(), radiosim.Config{Devices: 2, Seed: 1, SharedActors: tc.actors, SharedEvents: 2, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		pages, err := radiosync.FrontierPages(s.Node(0))
		want := len(s.Backpack(0).Frontier())
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		room := lora.MaxPHYPayload - radiosync.DataOverhead + 3
		for i, p := range pages {
			if len(p) > room {
				t.Errorf("%d actors: page %d has %d bytes; a frame holds %d", tc.actors, i, len(p), room)
			}
		}
		complete, n, err := radiosync.MergePages(pages)
		if tc.truncated {
			// More than 64 pages hold: the rest of the range stays
			// uncovered, and the receiver leaves those actors alone.
			if err != nil || complete || n >= want || len(pages) != 64 {
				t.Errorf("%d actors: %d pages: complete %v, %d actors, %v; want 64 pages, incomplete", tc.actors, len(pages), complete, n, err)
			}
			continue
		}
		if err != nil || !complete || n != want || len(pages) < tc.minPages {
			t.Errorf("%d actors: %d pages: complete %v, %d actors, %v; want at least %d pages naming %d actors",
				tc.actors, len(pages), complete, n, err, tc.minPages, want)
		}
		if len(pages) > 1 {
			// Every page but the middle one, in reverse order.
			var some [][]byte
			for i := len(pages) - 1; i >= 0; i-- {
				if i != len(pages)/2 {
					some = append(some, pages[i])
				}
			}
			if complete, n, err := radiosync.MergePages(some); err != nil || complete || n >= want {
				t.Errorf("%d actors, one page missing: complete %v, %d actors, %v", tc.actors, complete, n, err)
			}
		}
		t.Logf("%d actors: %d pages", want, len(pages))
	}
}
