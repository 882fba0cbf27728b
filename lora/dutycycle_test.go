package lora_test

import (
	"errors"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestBudgetEU868(t *testing.T) {
	p := lora.Params{SpreadingFactor: 7, Bandwidth: 125000, CodingRate: 5}
	b := lora.NewBudget(lora.EU868, p)
	air := p.Airtime(255) // 399.616 ms; 36 s allowance per hour: 90 frames
	now := t0
	sent := 0
	for {
		wait, err := b.Take(now, 255)
		if err != nil {
			t.Fatal(err)
		}
		if wait > 0 {
			break
		}
		sent++
		now = now.Add(air)
	}
	if sent != 90 {
		t.Fatalf("sent %d back-to-back 255 B frames at SF7 under 1 %%, want 90", sent)
	}
	// The next frame may go once the first one has left the window.
	wait, _ := b.Wait(now, 255)
	if want := t0.Add(air + time.Hour - air).Sub(now); wait != want {
		t.Errorf("wait %v, want %v", wait, want)
	}
	if w, _ := b.Wait(now.Add(wait), 255); w != 0 {
		t.Errorf("still waiting %v after the announced time", w)
	}
	if u := b.Used(now); u != 90*air {
		t.Errorf("Used = %v, want %v", u, 90*air)
	}
}

func TestBudgetNeverSendable(t *testing.T) {
	p12 := lora.Params{SpreadingFactor: 12, Bandwidth: 125000, CodingRate: 5}
	if _, err := lora.NewBudget(lora.US915, p12).Wait(t0, 20); !errors.Is(err, lora.ErrDwell) {
		t.Errorf("SF12 under US915 dwell: %v, want ErrDwell", err)
	}
	if w, err := lora.NewBudget(lora.US915, lora.Params{SpreadingFactor: 7, Bandwidth: 125000, CodingRate: 5}).Wait(t0, 255); err != nil || w != 0 {
		t.Errorf("SF7 255 B under US915: %v %v", w, err)
	}
	tiny := lora.Region{Name: "tiny", DutyCycle: 0.001, Window: time.Minute} // 60 ms
	if _, err := lora.NewBudget(tiny, p12).Wait(t0, 1); !errors.Is(err, lora.ErrOverBudget) {
		t.Errorf("over allowance: %v, want ErrOverBudget", err)
	}
}

func TestBudgetOneAtATime(t *testing.T) {
	p := lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	b := lora.NewBudget(lora.Unlimited, p)
	if w, _ := b.Take(t0, 100); w != 0 {
		t.Fatal(w)
	}
	if w, _ := b.Wait(t0.Add(time.Millisecond), 10); w != p.Airtime(100)-time.Millisecond {
		t.Errorf("wait while on air = %v, want %v", w, p.Airtime(100)-time.Millisecond)
	}
}

func TestEURegion(t *testing.T) {
	for hz, want := range map[uint32]string{869_525_000: lora.EU869.Name, 868_100_000: lora.EU868.Name, 864_000_000: lora.EU863.Name} {
		if r, ok := lora.EURegion(hz); !ok || r.Name != want {
			t.Errorf("%d: %v %v", hz, r.Name, ok)
		}
	}
	if _, ok := lora.EURegion(915_000_000); ok {
		t.Error("915 MHz is not EU")
	}
}

// TestBudgetProperty drives a budget with a seeded random workload that
// always sends as early as the budget allows, and checks that no window of
// the region's length ever holds more airtime than the allowance.
func TestBudgetProperty(t *testing.T) {
	seeds := []uint64{1, 2, 3, 42, uint64(time.Now().UnixNano())}
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		region := lora.Region{Name: "prop", DutyCycle: []float64{0.01, 0.1, 0.3}[rng.IntN(3)], Window: time.Duration(1+rng.IntN(60)) * time.Minute}
		p := lora.Params{SpreadingFactor: 7 + rng.IntN(6), Bandwidth: []int{125000, 250000, 500000}[rng.IntN(3)], CodingRate: 5 + rng.IntN(4)}
		b := lora.NewBudget(region, p)
		type span struct{ s, e time.Time }
		var sent []span
		now := t0
		for range 600 {
			n := 1 + rng.IntN(255)
			if rng.IntN(4) == 0 {
				now = now.Add(time.Duration(rng.Int64N(int64(region.Window / 4))))
			}
			wait, err := b.Take(now, n)
			if errors.Is(err, lora.ErrOverBudget) {
				continue
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if wait > 0 {
				now = now.Add(wait)
				if w2, _ := b.Take(now, n); w2 != 0 {
					t.Fatalf("seed %d: announced wait %v, then asked to wait %v more", seed, wait, w2)
				}
			}
			sent = append(sent, span{now, now.Add(p.Airtime(n))})
			now = now.Add(time.Duration(rng.Int64N(int64(p.Airtime(n)) * 2)))
		}
		sort.Slice(sent, func(i, j int) bool { return sent[i].s.Before(sent[j].s) })
		allow := region.Allowance()
		occupancy := func(from time.Time) time.Duration {
			to := from.Add(region.Window)
			var sum time.Duration
			for _, x := range sent {
				s, e := x.s, x.e
				if s.Before(from) {
					s = from
				}
				if e.After(to) {
					e = to
				}
				if e.After(s) {
					sum += e.Sub(s)
				}
			}
			return sum
		}
		for i, x := range sent {
			if i > 0 && x.s.Before(sent[i-1].e) {
				t.Fatalf("seed %d: transmissions %d and %d overlap", seed, i-1, i)
			}
			// The maximum over all windows is reached with a window that
			// starts at a transmission's start or ends at one's end.
			for _, from := range []time.Time{x.s, x.e.Add(-region.Window)} {
				if occ := occupancy(from); occ > allow {
					t.Fatalf("seed %d: window from %v holds %v on air, allowance %v (%s, %+v)", seed, from.Sub(t0), occ, allow, region.Name, p)
				}
			}
		}
		if len(sent) < 10 {
			t.Errorf("seed %d: only %d frames sent", seed, len(sent))
		}
	}
}
