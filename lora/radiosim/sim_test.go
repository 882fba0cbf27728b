package radiosim_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora/radiosim"
)

// run runs cfg in the test's temp dir and fails the test on error.
func run(t *testing.T, cfg radiosim.Config) (*radiosim.Sim, *radiosim.Report) {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", filepath.Join(t.TempDir(), "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := radiosim.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	rep, err := s.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: converged %v at %v; %d frames, %d bytes, %v airtime; %d events written",
		cfg.Seed, rep.Converged, rep.ConvergedAt, rep.Frames, rep.Bytes, rep.Airtime, rep.Written)
	for i, d := range rep.Devices {
		t.Logf("device %d: %d events, state %s, %d frames out, %v airtime, %d in, %d lost, %+v",
			i, d.Events, d.StateHash, d.FramesOut, d.Airtime, d.FramesIn, d.Lost, d.Counters)
	}
	return s, rep
}

func TestLineWithLossConvergesWithFork(t *testing.T) {
	_, rep := run(t, radiosim.Config{
		Devices: 3, Seed: 1, Line: true, Loss: 0.2, Duplicate: 0.05, Reorder: 0.05,
		Offline: 12, Fork: []int{2, 0}, Until: 3 * 24 * time.Hour,
	})
	if !rep.Converged || !rep.SameState {
		t.Fatalf("converged %v, same state %v", rep.Converged, rep.SameState)
	}
	// 1 + 12 offline events per device, the fork, and the key promotions.
	for i, d := range rep.Devices {
		if d.Events != rep.Devices[0].Events || d.Events < 3*12+1 {
			t.Errorf("device %d holds %d events", i, d.Events)
		}
	}
}
