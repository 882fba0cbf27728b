package radiosync_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosim"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// TestSyncerOverMedium runs two Syncers in real (virtual, synctest) time
// over lora.SimLinks with loss and the EU868 duty cycle, and checks that
// their backpacks converge and that the status reports the link.
func TestSyncerOverMedium(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", filepath.Join(t.TempDir(), "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s, err := radiosim.New(t.Context(), radiosim.Config{Devices: 2, Seed: 11, Offline: 20, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		m := lora.NewMedium(lora.MediumOptions{Seed: 1, Loss: 0.1, Duplicate: 0.05})
		var syncers []*radiosync.Syncer
		for i := range 2 {
			l := m.Attach(lora.SimLinkOptions{Region: lora.EU868})
			defer l.Close()
			sy, err := radiosync.NewSyncer(l, s.Backpack(i), radiosync.Options{Region: lora.EU868, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			syncers = append(syncers, sy)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for _, sy := range syncers {
			wg.Go(func() {
				if err := sy.Run(ctx); !errors.Is(err, context.Canceled) {
					t.Errorf("Run: %v", err)
				}
			})
		}
		start := time.Now()
		for s.Backpack(0).Frontier().Digest() != s.Backpack(1).Frontier().Digest() && time.Since(start) < 48*time.Hour {
			time.Sleep(time.Minute)
		}
		took := time.Since(start)
		st := syncers[0].Status()
		cancel()
		wg.Wait()
		h0, _ := s.Backpack(0).StateHash()
		h1, _ := s.Backpack(1).StateHash()
		if h0 != h1 || h0 == "" {
			t.Fatalf("after %v: state hashes %s and %s", took, h0, h1)
		}
		t.Logf("converged after %v; status %+v", took, st)
		if st.Link != "up" || st.LinkStats.FramesSent == 0 || st.Counters.HellosSent == 0 || len(st.Peers) != 1 || st.Used > st.Allowance {
			t.Errorf("status %+v", st)
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
