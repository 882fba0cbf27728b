package lora

import (
	"container/heap"
	"context"
	"math"
	"sync"
	"time"
)

// MediumOptions configures a simulated radio medium. Rates are
// probabilities per frame and receiver, in [0, 1].
type MediumOptions struct {
	// Seed makes every random decision (loss, duplicate, reorder)
	// reproducible: each is a hash of the seed, the sender, the sender's
	// frame number and the receiver, so it does not depend on goroutine
	// scheduling.
	Seed      uint64
	Loss      float64
	Duplicate float64 // the receiver gets the frame twice
	Reorder   float64 // the frame is held back 1-4 airtimes, so later ones overtake it
	// Collisions makes overlapping transmissions heard by one receiver
	// destroy each other (no capture effect), and a link that is
	// transmitting deaf to others (half duplex).
	Collisions bool
	// TimeScale is real time per unit of medium time (0 means 1): 0.001
	// runs a 1 s transmission in 1 ms. Inside testing/synctest leave it
	// at 1; time is then virtual and runs are deterministic.
	TimeScale float64
}

// SimLinkOptions configures one link attached to a Medium.
type SimLinkOptions struct {
	// Params set the airtime of each frame; links hear only links with
	// the same spreading factor and bandwidth. Zero means SF9, 125 kHz,
	// CR 4/5.
	Params Params
	// Region is enforced: Send waits for the duty-cycle budget and
	// refuses frames that can never fit. Zero means no limit.
	Region Region
	// MTU defaults to MaxPHYPayload.
	MTU int
}

// Medium is an in-memory radio channel shared by SimLinks. It is safe for
// concurrent use.
type Medium struct {
	opts      MediumOptions
	epoch     time.Time // medium time origin (scaled mode)
	epochReal time.Time

	mu     sync.Mutex // mu guards the fields below and every SimLink's state
	links  []*SimLink
	deaf   map[[2]int]bool // from, to: out of range
	groups []int           // partition group per link; equal groups hear each other
}

// NewMedium returns an empty medium.
func NewMedium(opts MediumOptions) *Medium {
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	now := time.Now()
	return &Medium{opts: opts, epoch: now, epochReal: now, deaf: map[[2]int]bool{}}
}

// now is the medium's time.
func (m *Medium) now() time.Time {
	if m.opts.TimeScale == 1 {
		return time.Now()
	}
	return m.epoch.Add(time.Duration(float64(time.Since(m.epochReal)) / m.opts.TimeScale))
}

func (m *Medium) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) * m.opts.TimeScale)
}

// Attach adds a link to the medium. It hears every link with the same
// modulation until SetRange or Partition says otherwise.
func (m *Medium) Attach(opts SimLinkOptions) *SimLink {
	if opts.Params == (Params{}) {
		opts.Params = Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	}
	if opts.MTU <= 0 {
		opts.MTU = MaxPHYPayload
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l := &SimLink{
		m: m, id: len(m.links), opts: opts,
		budget: NewBudget(opts.Region, opts.Params),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	m.links = append(m.links, l)
	m.groups = append(m.groups, 0)
	return l
}

// SetRange sets whether to hears from (directed: radios differ).
func (m *Medium) SetRange(from, to *SimLink, hears bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hears {
		delete(m.deaf, [2]int{from.id, to.id})
	} else {
		m.deaf[[2]int{from.id, to.id}] = true
	}
}

// Partition splits the medium: links in one group hear only each other,
// and a link in no group hears no one. Range still applies inside a group.
func (m *Medium) Partition(groups ...[]*SimLink) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.groups {
		m.groups[i] = -1 - i // alone
	}
	for g, ls := range groups {
		for _, l := range ls {
			m.groups[l.id] = g + 1
		}
	}
}

// Heal ends a partition.
func (m *Medium) Heal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.groups {
		m.groups[i] = 0
	}
}

func (m *Medium) hearsLocked(from, to *SimLink) bool {
	return from != to && !to.closed && !m.deaf[[2]int{from.id, to.id}] && m.groups[from.id] == m.groups[to.id] &&
		from.opts.Params.SpreadingFactor == to.opts.Params.SpreadingFactor &&
		from.opts.Params.Bandwidth == to.opts.Params.Bandwidth
}

// chance is a reproducible number in [0, 1) for one decision.
func (m *Medium) chance(from int, seq uint64, to int, what uint64) float64 {
	x := m.opts.Seed
	for _, v := range []uint64{uint64(from), seq, uint64(to), what} {
		x = splitmix(x ^ v)
	}
	return float64(x>>11) / (1 << 53)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// SimLink is a Link on a Medium. Send holds the caller for the frame's
// airtime (and first for the duty-cycle budget); receivers get the frame
// when its transmission ends.
type SimLink struct {
	m      *Medium
	id     int
	opts   SimLinkOptions
	budget *Budget // own lock, taken under m.mu; also tracks when the radio is busy
	notify chan struct{}
	done   chan struct{} // closed by Close

	// Guarded by m.mu:
	closed bool
	seq    uint64
	inbox  inbox
	onAir  []*arrival // arrivals still on the air, for collisions
	txEnd  time.Time
	st     Stats
}

var _ Link = (*SimLink)(nil)

type arrival struct {
	at, start time.Time
	from      int
	seq       uint64
	copy      int
	payload   []byte
	lost      bool // destroyed by a collision after it was queued
}

type inbox []*arrival

func (q inbox) Len() int { return len(q) }
func (q inbox) Less(i, j int) bool {
	a, b := q[i], q[j]
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	if a.from != b.from {
		return a.from < b.from
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.copy < b.copy
}
func (q inbox) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *inbox) Push(x any)   { *q = append(*q, x.(*arrival)) }
func (q *inbox) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// ID is the link's index on its medium, in order of Attach.
func (l *SimLink) ID() int { return l.id }

// MTU implements Link.
func (l *SimLink) MTU() int { return l.opts.MTU }

// Send implements Link.
func (l *SimLink) Send(ctx context.Context, p []byte) error {
	if len(p) > l.opts.MTU {
		return ErrTooLarge
	}
	air := l.opts.Params.Airtime(len(p))
	m := l.m
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.mu.Lock()
		if l.closed {
			m.mu.Unlock()
			return ErrClosed
		}
		now := m.now()
		wait, err := l.budget.TakeAirtime(now, air)
		if err != nil {
			m.mu.Unlock()
			return err
		}
		if wait > 0 {
			l.st.DutyWait += wait
			m.mu.Unlock()
			if err := l.sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		l.transmitLocked(now, air, p)
		m.mu.Unlock()
		break
	}
	// The radio is busy for the airtime; the frame is already on its way.
	if err := l.sleep(ctx, air); err != nil && err != ErrClosed {
		return err
	}
	return nil
}

func (l *SimLink) transmitLocked(now time.Time, air time.Duration, p []byte) {
	m := l.m
	l.seq++
	l.txEnd = now.Add(air)
	l.st.FramesSent++
	l.st.BytesSent += uint64(len(p))
	l.st.Airtime += air
	for _, r := range m.links {
		if !m.hearsLocked(l, r) {
			continue
		}
		if m.chance(l.id, l.seq, r.id, 1) < m.opts.Loss {
			r.st.FramesLost++
			continue
		}
		a := &arrival{at: now.Add(air), start: now, from: l.id, seq: l.seq, payload: append([]byte(nil), p...)}
		if m.opts.Collisions {
			collided := r.txEnd.After(now) // r is transmitting: deaf
			keep := r.onAir[:0]
			for _, o := range r.onAir {
				if o.at.After(now) {
					keep = append(keep, o)
					if !o.lost {
						o.lost = true
					}
					collided = true
				}
			}
			r.onAir = keep
			a.lost = collided
			r.onAir = append(r.onAir, a)
		}
		if m.chance(l.id, l.seq, r.id, 2) < m.opts.Reorder {
			extra := 1 + 3*m.chance(l.id, l.seq, r.id, 3)
			a.at = a.at.Add(time.Duration(extra * float64(air)))
		}
		heap.Push(&r.inbox, a)
		if m.chance(l.id, l.seq, r.id, 4) < m.opts.Duplicate {
			d := *a
			d.copy = 1
			d.at = a.at.Add(air)
			heap.Push(&r.inbox, &d)
		}
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

// sleep waits for d of medium time.
func (l *SimLink) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(l.m.real(d))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return ErrClosed
	}
}

// Recv implements Link.
func (l *SimLink) Recv(ctx context.Context) (Frame, error) {
	m := l.m
	for {
		m.mu.Lock()
		if l.closed {
			m.mu.Unlock()
			return Frame{}, ErrClosed
		}
		wait := time.Duration(math.MaxInt64)
		if len(l.inbox) > 0 {
			now := m.now()
			head := l.inbox[0]
			if !head.at.After(now) {
				heap.Pop(&l.inbox)
				if head.lost {
					l.st.FramesLost++
					m.mu.Unlock()
					continue
				}
				l.st.FramesReceived++
				l.st.BytesReceived += uint64(len(head.payload))
				m.mu.Unlock()
				return Frame{Payload: append([]byte(nil), head.payload...)}, nil
			}
			wait = head.at.Sub(now)
		}
		m.mu.Unlock()
		if err := l.await(ctx, wait); err != nil {
			return Frame{}, err
		}
	}
}

// await blocks until wait has passed (forever for MaxInt64), a frame
// was queued, ctx is done or the link is closed.
func (l *SimLink) await(ctx context.Context, wait time.Duration) error {
	var timer <-chan time.Time
	if wait != time.Duration(math.MaxInt64) {
		t := time.NewTimer(l.m.real(wait))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
	case <-l.notify:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.done:
		return ErrClosed
	}
	return nil
}

// Stats implements Link.
func (l *SimLink) Stats() Stats {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	return l.st
}

// Budget returns the link's duty-cycle accountant (to plan with Clone).
func (l *SimLink) Budget() *Budget { return l.budget }

// Close implements Link. Frames still on their way to the link are lost.
func (l *SimLink) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}
