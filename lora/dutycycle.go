package lora

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Region is a regulatory regime for one channel: a share of airtime over a
// sliding window and a limit on each transmission.
type Region struct {
	Name string
	// DutyCycle is the share of Window a device may transmit (0.01 for
	// 1 %); 0 means no duty-cycle limit.
	DutyCycle float64
	// Window is the sliding window the duty cycle is measured over.
	Window time.Duration
	// MaxDwell is the longest single transmission; 0 means no limit.
	MaxDwell time.Duration
}

// Region presets (see LORA.md §3).
var (
	// EU868 covers the 868.0-868.6 MHz LoRaWAN channels: 1 % per hour.
	EU868 = Region{Name: "EU868", DutyCycle: 0.01, Window: time.Hour}
	// EU869 is the 869.4-869.65 MHz sub-band: 10 % per hour (up to 27 dBm).
	EU869 = Region{Name: "EU869 869.4-869.65 MHz", DutyCycle: 0.10, Window: time.Hour}
	// EU863 covers the 863-865 MHz ranges limited to 0.1 % per hour.
	EU863 = Region{Name: "EU863", DutyCycle: 0.001, Window: time.Hour}
	// US915 limits each transmission to a 400 ms dwell time (FCC 15.247
	// for < 250 kHz channels); there is no duty cycle.
	US915 = Region{Name: "US915", MaxDwell: 400 * time.Millisecond}
	// Unlimited applies no limit (a lab, a shielded test).
	Unlimited = Region{Name: "unlimited"}
)

// EURegion returns the EU868 preset that governs a frequency in Hz, and
// false outside 863-870 MHz.
func EURegion(hz uint32) (Region, bool) {
	switch {
	case hz >= 869_400_000 && hz <= 869_650_000:
		return EU869, true
	case hz >= 865_000_000 && hz <= 870_000_000:
		return EU868, true
	case hz >= 863_000_000 && hz < 865_000_000:
		return EU863, true
	}
	return Region{}, false
}

// Allowance is the airtime the region allows in any window.
func (r Region) Allowance() time.Duration {
	if r.DutyCycle <= 0 || r.Window <= 0 {
		return 0
	}
	return time.Duration(r.DutyCycle * float64(r.Window))
}

func (r Region) limited() bool { return r.Allowance() > 0 }

var (
	// ErrDwell matches a frame whose airtime exceeds the region's maximum
	// dwell time: it can never be sent with these parameters.
	ErrDwell = errors.New("lora: frame airtime exceeds the dwell time limit")
	// ErrOverBudget matches a frame whose airtime exceeds the whole
	// duty-cycle allowance: it can never be sent.
	ErrOverBudget = errors.New("lora: frame airtime exceeds the duty-cycle allowance")
)

// Budget accounts airtime against a Region's duty cycle over a sliding
// window. It guarantees that in every window of the region's length the
// sum of airtime of the transmissions it admitted stays within the
// allowance: at admission it counts, in full, every earlier transmission
// that ends inside the window ending with the new one's end, and it
// admits no transmission while another is still on air, which bounds
// every other window too.
//
// Budget reads no clock: callers pass the current time. It is safe for
// concurrent use.
type Budget struct {
	region Region
	params Params

	mu   sync.Mutex // mu guards the fields below
	txs  []tx       // admitted transmissions, by time; pruned lazily
	used time.Duration
}

type tx struct {
	start, end time.Time
}

// NewBudget returns an empty budget for region whose frames are sent with
// params (used to turn byte counts into airtime).
func NewBudget(region Region, params Params) *Budget {
	return &Budget{region: region, params: params}
}

// Region returns the budget's region.
func (b *Budget) Region() Region { return b.region }

// Params returns the radio parameters the budget computes airtime with.
func (b *Budget) Params() Params { return b.params }

// Wait reports how long after now a frame of n payload bytes may start:
// 0 if it may be sent now. The error matches ErrDwell or ErrOverBudget for
// a frame that can never be sent.
func (b *Budget) Wait(now time.Time, n int) (time.Duration, error) {
	return b.WaitAirtime(now, b.params.Airtime(n))
}

// Take admits a frame of n bytes now if the budget allows it and returns
// 0; otherwise it records nothing and returns how long to wait.
func (b *Budget) Take(now time.Time, n int) (time.Duration, error) {
	return b.TakeAirtime(now, b.params.Airtime(n))
}

// WaitAirtime is Wait for a transmission of the given airtime.
func (b *Budget) WaitAirtime(now time.Time, airtime time.Duration) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, err := b.earliestLocked(now, airtime)
	if err != nil {
		return 0, err
	}
	return at.Sub(now), nil
}

// TakeAirtime is Take for a transmission of the given airtime.
func (b *Budget) TakeAirtime(now time.Time, airtime time.Duration) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, err := b.earliestLocked(now, airtime)
	if err != nil {
		return 0, err
	}
	if at.After(now) {
		return at.Sub(now), nil
	}
	b.recordLocked(now, airtime)
	return 0, nil
}

// Record accounts a transmission that started at now whatever the budget
// says (one another component already sent, say). A budget that records
// over its allowance delays later frames accordingly.
func (b *Budget) Record(now time.Time, airtime time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recordLocked(now, airtime)
}

// Used is the airtime counted against a transmission that would end at
// now: the sum of transmissions ending after now minus the window.
func (b *Budget) Used(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked(now)
	var sum time.Duration
	for _, t := range b.txs {
		if t.end.After(now.Add(-b.region.Window)) {
			sum += t.end.Sub(t.start)
		}
	}
	return sum
}

// Clone returns an independent copy of the budget, to plan with.
func (b *Budget) Clone() *Budget {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &Budget{region: b.region, params: b.params, txs: append([]tx(nil), b.txs...), used: b.used}
}

func (b *Budget) recordLocked(now time.Time, airtime time.Duration) {
	if airtime <= 0 {
		return
	}
	b.pruneLocked(now)
	t := tx{start: now, end: now.Add(airtime)}
	// Keep txs sorted by end; Record may be given an earlier start.
	i := len(b.txs)
	for i > 0 && b.txs[i-1].end.After(t.end) {
		i--
	}
	b.txs = append(b.txs, tx{})
	copy(b.txs[i+1:], b.txs[i:])
	b.txs[i] = t
	b.used += airtime
}

// pruneLocked forgets transmissions that can no longer count: one ending
// at or before now - Window is outside every window a frame starting at
// now or later is checked against.
func (b *Budget) pruneLocked(now time.Time) {
	if !b.region.limited() {
		// Only the last transmission matters (the radio is busy until
		// it ends).
		if n := len(b.txs); n > 1 {
			b.txs = append(b.txs[:0], b.txs[n-1])
		}
		return
	}
	cut := now.Add(-b.region.Window)
	i := 0
	for i < len(b.txs) && !b.txs[i].end.After(cut) {
		b.used -= b.txs[i].end.Sub(b.txs[i].start)
		i++
	}
	if i > 0 {
		b.txs = append(b.txs[:0], b.txs[i:]...)
	}
}

// earliestLocked is the earliest start at or after now for a
// transmission of the given airtime.
func (b *Budget) earliestLocked(now time.Time, airtime time.Duration) (time.Time, error) {
	if airtime < 0 {
		airtime = 0
	}
	r := b.region
	if r.MaxDwell > 0 && airtime > r.MaxDwell {
		return time.Time{}, fmt.Errorf("%w: %v on air, %s allows %v", ErrDwell, airtime, r.Name, r.MaxDwell)
	}
	b.pruneLocked(now)
	at := now
	if n := len(b.txs); n > 0 && b.txs[n-1].end.After(at) {
		at = b.txs[n-1].end // one transmission at a time
	}
	if !r.limited() {
		return at, nil
	}
	allow := r.Allowance()
	if airtime > allow {
		return time.Time{}, fmt.Errorf("%w: %v on air, %s allows %v per %v", ErrOverBudget, airtime, r.Name, allow, r.Window)
	}
	// Counted at start s: every tx with end > s + airtime - Window. Drop
	// the oldest until the rest plus this one fit; then s must be late
	// enough that the last dropped one no longer counts.
	sum := b.used
	for _, t := range b.txs {
		if t.end.After(at.Add(airtime-r.Window)) && sum+airtime <= allow {
			break
		}
		if !t.end.After(at.Add(airtime - r.Window)) {
			sum -= t.end.Sub(t.start)
			continue
		}
		sum -= t.end.Sub(t.start)
		if s := t.end.Add(r.Window - airtime); s.After(at) {
			at = s
		}
	}
	return at, nil
}
