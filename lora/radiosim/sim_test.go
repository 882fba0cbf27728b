package radiosim_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
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
	allow := cfg.Region.Allowance()
	if cfg.Region == (lora.Region{}) {
		allow = lora.EU868.Allowance()
	}
	for i, d := range rep.Devices {
		t.Logf("device %d: %d events, state %s, %d frames out, %v airtime (at most %v in an hour), %d in, %d lost, %+v",
			i, d.Events, d.StateHash, d.FramesOut, d.Airtime, d.MaxWindowAirtime, d.FramesIn, d.Lost, d.Counters)
		if allow > 0 && d.MaxWindowAirtime > allow {
			t.Errorf("device %d used %v of airtime in one window; the duty cycle allows %v", i, d.MaxWindowAirtime, allow)
		}
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

func TestLineForkIsRecorded(t *testing.T) {
	s, rep := run(t, radiosim.Config{Devices: 3, Seed: 2, Line: true, Loss: 0.2, Offline: 5, Fork: []int{2, 0}})
	if !rep.Converged || !rep.SameState {
		t.Fatalf("converged %v, same state %v", rep.Converged, rep.SameState)
	}
	for i := range 3 {
		forks, err := s.Backpack(i).ForkRecords()
		if err != nil {
			t.Fatal(err)
		}
		if len(forks) == 0 {
			t.Errorf("device %d recorded no fork", i)
		}
	}
}

func TestInSyncDevicesOnlySayHello(t *testing.T) {
	const after = 3 * time.Hour
	_, rep := run(t, radiosim.Config{Devices: 2, Seed: 3, Offline: 2, Settle: time.Hour, After: after})
	if !rep.Converged || !rep.SameState {
		t.Fatalf("converged %v, same state %v", rep.Converged, rep.SameState)
	}
	// Default hello interval 10 min, each drawn from 8.5 to 11.5 min: at
	// most 22 hellos each in 3 h, each 14 bytes plus one 10-byte tag per
	// peer.
	if max := 2 * (int(after/(85*time.Minute/10)) + 1); rep.AfterFrames > max {
		t.Errorf("two in-sync devices sent %d frames in %v; at most %d hellos expected", rep.AfterFrames, after, max)
	}
	if rep.AfterFrames == 0 || rep.AfterHellos != rep.AfterFrames || rep.AfterBytes != rep.AfterFrames*24 {
		t.Errorf("in sync: %d frames, %d bytes; want only 24-byte hellos", rep.AfterFrames, rep.AfterBytes)
	}
}

func TestDeviceAwayForAWeekCatchesUp(t *testing.T) {
	week := 7 * 24 * time.Hour
	var writes []radiosim.Write
	for at := time.Hour; at < week; at += 3 * time.Hour {
		writes = append(writes, radiosim.Write{At: at, Device: 0}, radiosim.Write{At: at + 90*time.Minute, Device: 1})
	}
	writes = append(writes, radiosim.Write{At: 3 * 24 * time.Hour, Device: 2})
	_, rep := run(t, radiosim.Config{
		Devices: 3, Seed: 4, Loss: 0.1, Writes: writes, Until: week + 2*24*time.Hour,
		Partitions: []radiosim.Partition{{From: 0, To: week, Groups: [][]int{{0, 1}, {2}}}},
	})
	if !rep.Converged || !rep.SameState {
		t.Fatalf("converged %v, same state %v", rep.Converged, rep.SameState)
	}
	if rep.ConvergedAt < week {
		t.Errorf("converged at %v, before the partition ended", rep.ConvergedAt)
	}
	t.Logf("caught up %v after the week", rep.ConvergedAt-week)
}

// TestDeterministic runs one seed twice. Every decision of the medium
// and the protocol follows from the seed, but the device keys are fresh
// in each run (store.Init and store.Join draw them from crypto/rand), so
// compressed sizes, and with them airtime, may differ by a few bytes:
// the runs must agree on convergence and closely on time and frames.
func TestDeterministic(t *testing.T) {
	cfg := radiosim.Config{Devices: 3, Seed: 5, Line: true, Loss: 0.2, Reorder: 0.1, Duplicate: 0.1, Offline: 4}
	_, a := run(t, cfg)
	_, b := run(t, cfg)
	if a.Converged != b.Converged || a.ConvergedAt != b.ConvergedAt || a.Frames != b.Frames || a.Bytes != b.Bytes {
		t.Errorf("same seed, two runs: %v/%d frames/%v vs %v/%d frames/%v", a.Converged, a.Frames, a.ConvergedAt, b.Converged, b.Frames, b.ConvergedAt)
	}
}

// TestManyActorsSendOnlyTheDelta: two devices share the history of 60
// actors (more than one FRONTIER frame holds) and write a few events
// each. Only those events may cross the air, not the chains of the
// actors the peer already holds.
func TestManyActorsSendOnlyTheDelta(t *testing.T) {
	const actors, newEach = 60, 3
	for _, tc := range []struct {
		name     string
		loss     float64
		maxBytes int
	}{
		{"no loss", 0, 6000},
		{"20% loss", 0.2, 12000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rep := run(t, radiosim.Config{Devices: 2, Seed: 21, Loss: tc.loss, SharedActors: actors, SharedEvents: 4, Offline: newEach})
			if !rep.Converged || !rep.SameState {
				t.Fatalf("converged %v, same state %v", rep.Converged, rep.SameState)
			}
			sent := 0
			for _, d := range rep.Devices {
				sent += int(d.Counters.EventsSent)
			}
			// Each device's new events, once each way (a transfer lost
			// whole may go twice); nothing of the 240 shared ones.
			if sent > 2*2*newEach {
				t.Errorf("%d events sent for %d new ones: chains the peer held went again", sent, 2*newEach)
			}
			// The delta is 2 x 3 events of ~150 bytes in DATA frames; the
			// frontiers of 61 actors take 5 frames each way; resending the
			// shared history would take tens of kilobytes.
			if rep.Bytes > tc.maxBytes {
				t.Errorf("%d bytes on air for %d new events", rep.Bytes, 2*newEach)
			}
		})
	}
}

// TestCollisions: three devices all in range of each other write events
// at the same moment, on radios where overlapping transmissions destroy
// each other at a receiver. With listening before talking they converge
// with few collisions; without it (every overlap collides) the
// protocol's retries still bring them together.
func TestCollisions(t *testing.T) {
	var writes []radiosim.Write
	for i := range 3 {
		for range 4 {
			writes = append(writes, radiosim.Write{At: 3 * time.Hour, Device: i})
		}
	}
	for _, tc := range []struct {
		name    string
		noSense bool
	}{{"listen before talk", false}, {"no carrier sense", true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, rep := run(t, radiosim.Config{Devices: 3, Seed: 41, Offline: 10, Writes: writes, HalfDuplex: true,
				Collisions: true, NoCarrierSense: tc.noSense, Until: 3 * 24 * time.Hour})
			if !rep.Converged || !rep.SameState {
				t.Fatalf("converged %v, same state %v", rep.Converged, rep.SameState)
			}
			if rep.ConvergedAt < 3*time.Hour {
				t.Fatalf("converged at %v, before the last writes", rep.ConvergedAt)
			}
			t.Logf("%s: %d collisions, converged at %v", tc.name, rep.Collisions, rep.ConvergedAt)
			if tc.noSense && rep.Collisions == 0 {
				t.Error("no collision without carrier sense: the model does not see overlaps")
			}
		})
	}
}
