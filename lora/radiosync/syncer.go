package radiosync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/backpack-field/backpack/lora"
)

// Status is a snapshot of a device's radio sync, for the TUI's radio view
// and the agent's status.
type Status struct {
	KeyID, Actor string
	// Link is "up", or "down: <reason>" after the link failed.
	Link string
	// Region, the airtime used in its current window and the allowance.
	Region    string
	Used      time.Duration
	Allowance time.Duration
	// LinkStats are the link's own counters (frames sent, received, lost).
	LinkStats lora.Stats
	Counters  Counters
	// Signal of the last frame heard, when the link reports it.
	HasSignal bool
	RSSI      int
	SNR       float64
	Peers     []PeerStatus
	Queue     QueueStatus
}

// PeerStatus is what a device knows of one peer.
type PeerStatus struct {
	KeyID     string
	LastHeard time.Time // zero: never heard
	InSync    bool      // its last hello carried my frontier digest
	ToSend    int       // events planned or in flight to it
	Receiving int       // half-received transfers from it
	// Transfer describes the batch in flight to it ("" when none).
	Transfer string
}

// QueueStatus describes the send queue: frames and bytes per class (own,
// relay, backfill) and the estimated time until each class, and the whole
// queue, has been sent under the duty-cycle budget.
type QueueStatus struct {
	Frames [3]int
	Bytes  [3]int
	ETA    [3]time.Duration
	Total  time.Duration
}

// Status returns a snapshot at now.
//
// It does not ask the store anything (a store busy with a write must not
// hold up a status): "in sync" compares with the frontier of the log view
// the protocol last worked from.
func (n *Node) Status(now time.Time) Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Status{KeyID: n.me.ID, Actor: n.actor, Region: n.budget.Region().Name,
		Used: n.budget.Used(now), Allowance: n.budget.Region().Allowance(), Counters: n.stats}
	var dig [digestSize]byte
	if n.view != nil {
		dig = [digestSize]byte(n.view.digest[:digestSize])
	}
	for _, p := range n.peers {
		ps := PeerStatus{KeyID: p.keyID, LastHeard: p.heard, InSync: !p.heard.IsZero() && p.digest == dig, Receiving: len(p.rx)}
		for _, b := range p.plan {
			ps.ToSend += len(b.ids)
		}
		if t := p.tx; t != nil {
			ps.ToSend += len(t.b.ids)
			acked := 0
			for _, a := range t.acked {
				if a {
					acked++
				}
			}
			ps.Transfer = fmt.Sprintf("batch %d: %d events, %d/%d fragments acknowledged, %d queued, retry %d (backoff %d), ACK due %s",
				t.id, len(t.b.ids), acked, len(t.frags), t.queued, t.retries, t.backoff, t.due.Format(time.RFC3339))
		}
		s.Peers = append(s.Peers, ps)
	}
	for c := range 3 {
		s.Queue.Frames[c] = n.queue.ClassLen(lora.Class(c))
		s.Queue.Bytes[c] = n.queue.ClassBytes(lora.Class(c))
	}
	s.Queue.ETA, s.Queue.Total = n.queue.ETA(now, n.budget)
	return s
}

// Counters returns the Node's counters.
func (n *Node) Counters() Counters {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Syncer runs a Node over a Link in real time (the agent's radio).
type Syncer struct {
	link lora.Link
	node *Node

	mu      sync.Mutex // mu guards the fields below
	linkErr error
	sig     lora.Frame // last frame heard (payload dropped)
}

// NewSyncer returns a Syncer for the device st belongs to. opts.MTU
// defaults to the link's.
func NewSyncer(link lora.Link, st Store, opts Options) (*Syncer, error) {
	if opts.MTU <= 0 || opts.MTU > link.MTU() {
		opts.MTU = link.MTU()
	}
	n, err := NewNode(st, opts)
	if err != nil {
		return nil, err
	}
	return &Syncer{link: link, node: n}, nil
}

// Node returns the state machine the Syncer drives.
func (s *Syncer) Node() *Node { return s.node }

// Status returns a snapshot with the link's state and counters.
func (s *Syncer) Status() Status {
	st := s.node.Status(time.Now())
	st.LinkStats = s.link.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Link = "up"
	if s.linkErr != nil {
		st.Link = "down: " + s.linkErr.Error()
	}
	st.HasSignal, st.RSSI, st.SNR = s.sig.HasSignal, s.sig.RSSI, s.sig.SNR
	return st
}

// Run syncs until ctx is done or the link fails; it returns the link's
// error (matching lora.ErrDisconnected when the device went away, so the
// caller can reopen it and run again) or ctx.Err(). It does not close the
// link.
func (s *Syncer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.node.Start(time.Now())
	frames := make(chan lora.Frame, 16)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owns nothing but the channel sends
		defer wg.Done()
		for {
			f, err := s.link.Recv(ctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	fail := func(err error) error {
		if ctx.Err() == nil {
			s.mu.Lock()
			s.linkErr = err
			s.mu.Unlock()
		}
		return err
	}
	for {
		now := time.Now()
		s.node.Tick(ctx, now)
		var wait time.Duration
		for {
			f, w := s.node.NextFrame(now)
			if f == nil {
				wait = w
				break
			}
			if err := s.link.Send(ctx, f); err != nil {
				if errors.Is(err, lora.ErrTooLarge) {
					continue
				}
				return fail(err)
			}
			now = time.Now()
		}
		d := s.node.Deadline().Sub(now)
		if wait > 0 && (d <= 0 || wait < d) {
			d = wait // due, or sooner: what the budget allows
		}
		d = max(d, time.Millisecond)
		t := time.NewTimer(d)
		select {
		case f := <-frames:
			t.Stop()
			s.mu.Lock()
			s.sig = lora.Frame{HasSignal: f.HasSignal, RSSI: f.RSSI, SNR: f.SNR}
			s.mu.Unlock()
			s.node.HandleFrame(ctx, time.Now(), f)
		case err := <-errc:
			t.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fail(err)
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
