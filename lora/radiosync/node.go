package radiosync

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/lora"
)

// Store is what the protocol needs of a backpack; *store.Backpack has it.
// Ingest is the one verified way in: every event a Node receives goes
// through it.
type Store interface {
	UID() string
	Actor() string
	SigningKey() (bplog.PrivateKey, error)
	Registry() *bplog.Registry
	Frontier() bplog.Frontier
	// Delta with a nil frontier returns every event line in log order.
	Delta(ctx context.Context, since bplog.Frontier) ([][]byte, error)
	Ingest(ctx context.Context, lines [][]byte, source string) (*store.IngestResult, error)
}

// Options configures a Node. The zero value gives the defaults.
type Options struct {
	// Params are the radio's modulation (airtime); zero means SF9,
	// 125 kHz, CR 4/5.
	Params lora.Params
	// Region is the duty-cycle regime the Node never exceeds (zero: no
	// limit).
	Region lora.Region
	// MTU is the link's frame size (default lora.MaxPHYPayload).
	MTU int
	// HelloEvery is the mean interval between hellos (default 10 min;
	// each interval is drawn from 0.85 to 1.15 times it, so that devices
	// do not stay in step); a hello follows sooner (HelloSoon, default
	// 30 s) when the frontier changed.
	HelloEvery, HelloSoon time.Duration
	// FrontierEvery limits FRONTIER frames to one peer (default 10 min);
	// none goes to a peer while a batch from it is half received.
	FrontierEvery time.Duration
	// AckTimeout is how long a sender waits for an ACK after its last
	// fragment before it sends that fragment again (default 5 min; the
	// peer may itself wait for its duty cycle), doubling with each retry
	// up to an hour. A retry counts only when the peer was not heard in
	// the meantime; after MaxRetries (default 6) the transfer and the plan
	// for that peer are dropped.
	AckTimeout time.Duration
	MaxRetries int
	// BatchEvents is the most events in one batch (default 16).
	BatchEvents int
	// ResendAfter: an event delivered to a peer (ACKed) is not sent to
	// it again for this long, even if its frontier does not show it yet
	// (it may be pending there; default 6 h).
	ResendAfter time.Duration
	// ReassemblyTimeout drops half-received transfers (default 1 h).
	ReassemblyTimeout time.Duration
	// QueueBytes bounds the send queue (default 64 KiB).
	QueueBytes int
	Logger     *slog.Logger
}

func (o *Options) defaults() {
	if o.Params == (lora.Params{}) {
		o.Params = lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	}
	if o.MTU <= 0 {
		o.MTU = lora.MaxPHYPayload
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.HelloEvery, 10*time.Minute)
	def(&o.HelloSoon, 30*time.Second)
	def(&o.FrontierEvery, 10*time.Minute)
	def(&o.AckTimeout, 5*time.Minute)
	def(&o.ResendAfter, 6*time.Hour)
	def(&o.ReassemblyTimeout, time.Hour)
	if o.MaxRetries <= 0 {
		o.MaxRetries = 6
	}
	if o.BatchEvents <= 0 {
		o.BatchEvents = 16
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = 64 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Reassembly bounds: half-received transfers held at once, per peer and
// in all, and fragments per transfer.
const (
	maxRxPerPeer = 2
	maxRx        = 8
	maxFragments = 64
	ackRequest   = 0x80 // in a DATA frame's fragment index: answer with an ACK
	doneMemory   = 8    // completed transfers remembered per peer (to re-ACK)
	doneFor      = 12 * time.Hour
)

// Node is the protocol state machine of one device. It reads no clock
// and does no radio I/O: the caller passes the time to every method,
// hands it received frames (HandleFrame), asks it for the next frame to
// transmit (NextFrame) and calls Tick at Deadline. Its methods are safe
// for concurrent use.
type Node struct {
	st    Store
	o     Options
	codec Codec

	mu      sync.Mutex // mu guards the fields below
	actor   string     // the store's actor, read at Start (for Status)
	me      bplog.PrivateKey
	hint    hint
	ctr     uint64
	reg     *bplog.Registry
	peers   []*peer
	queue   *lora.Queue
	budget  *lora.Budget
	view    *logView
	dicts   []*Dict // recently used, newest last
	hello   time.Time
	helloAt [digestSize]byte // digest sent in the last hello
	rxCount int
	// hold delays unicast frames after a frame was heard: a random
	// turnaround (up to two 255-byte airtimes) so that two half-duplex
	// radios answering each other do not keep sending at the same
	// moments.
	hold time.Time
	// busy is when the channel, last reported busy, may be used again:
	// the end of the transmission heard plus a random backoff (up to one
	// 255-byte airtime), so that the devices waiting for it do not all
	// start at once.
	busy  time.Time
	draws uint64
	stats Counters
	// xferBase is the first transfer id of this run: the Unix time of
	// Start in seconds, mod 2^16, so that a restarted device does not
	// reuse the ids of transfers its peers still remember (that would
	// take more than one transfer a second before the restart).
	xferBase uint16
}

// Counters count what a Node did.
type Counters struct {
	HellosSent, FrontiersSent, DataSent, AcksSent      uint64
	FramesHeard, BadFrames, AuthFailures, Replays      uint64
	EventsSent, EventsReceived, EventsApplied          uint64
	BatchesDone, BatchesFailed, TransfersDropped       uint64
	BytesSent, BytesReceived                           uint64
	Airtime                                            time.Duration
	QueueEvicted, RxRefused, DictMisses, IngestFailure uint64
}

type peer struct {
	keyID string
	pub   ed25519.PublicKey
	hint  hint
	key   [32]byte
	win   replayWindow

	heard        time.Time
	digest       [digestSize]byte
	frontierSent time.Time
	frontierDig  [32]byte      // my frontier digest when I last sent it
	their        theirFrontier // from its FRONTIER pages
	theirAt      time.Time

	plan      []*batch
	tx        *transfer
	nextXfer  uint16 // the id of the next transfer to p
	xferInit  bool   // nextXfer was set from the Node's xferBase
	delivered map[string]time.Time

	rx   map[uint16]*reasm
	done []doneXfer // recently completed rx transfers
}

// doneXfer is a transfer received whole, remembered for doneFor so that
// its fragments, sent again because the ACK was lost, are answered.
type doneXfer struct {
	id uint16
	at time.Time
}

// batch is a run of events to send, by id (views are rebuilt as the log
// grows, so indices would go stale).
type batch struct {
	class lora.Class
	ids   []string
}

type transfer struct {
	id      uint16
	b       *batch
	frags   [][]byte // sealed-later frames, ready to queue
	queued  int      // fragments still in the send queue
	acked   []bool
	retries int       // timeouts with the peer silent
	backoff int       // timeouts in all: the wait doubles with each
	due     time.Time // ACK deadline, zero while fragments are queued
	sentAt  time.Time // when the last queued fragment left
	noDict  bool
}

type reasm struct {
	total int
	frags [][]byte
	have  int
	last  time.Time
}

// NewNode returns a Node for the device that st belongs to (st must hold
// its signing key).
func NewNode(st Store, o Options) (*Node, error) {
	o.defaults()
	key, err := st.SigningKey()
	if err != nil {
		return nil, fmt.Errorf("radiosync: the device needs its signing key: %w", err)
	}
	n := &Node{st: st, o: o, me: key, hint: hintOf(key.Public()),
		queue: lora.NewQueue(o.QueueBytes), budget: lora.NewBudget(o.Region, o.Params)}
	return n, nil
}

// Start sets the counter and the first hello from now. The counter
// starts at the Unix time in seconds times 256, so that it keeps growing
// across restarts as long as a device sends fewer than 256 frames a
// second on average.
func (n *Node) Start(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := uint64(now.Unix()) << 8; c > n.ctr {
		n.ctr = c
	}
	n.xferBase = uint16(now.Unix())
	n.actor = n.st.Actor()
	// Spread the first hellos of devices over a tenth of the interval.
	h := fnv.New64a()
	h.Write([]byte(n.actor))
	n.hello = now.Add(time.Duration(h.Sum64() % uint64(n.o.HelloEvery/10+1)))
}

// randLocked is a number in [0, 1) that differs per device and per call
// (a hash of the actor, the counter and the frames heard), so that runs
// repeat for a seed.
func (n *Node) randLocked() float64 {
	n.draws++
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d/%d", n.st.Actor(), n.ctr, n.draws)
	return float64(h.Sum64()>>11) / (1 << 53)
}

// jitterLocked returns d scaled by a factor in [0.85, 1.15), so that
// devices started together do not stay in step and keep hiding each
// other's frames (a half-duplex radio is deaf while it sends).
func (n *Node) jitterLocked(d time.Duration) time.Duration {
	return time.Duration((0.85 + 0.3*n.randLocked()) * float64(d))
}

// Budget returns the Node's duty-cycle accountant.
func (n *Node) Budget() *lora.Budget { return n.budget }

// Hint returns the device's 2-byte name on the air.
func (n *Node) Hint() [2]byte { return n.hint }

func (n *Node) refreshPeersLocked() {
	reg := n.st.Registry()
	if reg == n.reg {
		return
	}
	n.reg = reg
	old := map[string]*peer{}
	for _, p := range n.peers {
		old[p.keyID] = p
	}
	n.peers = n.peers[:0]
	for _, k := range reg.Keys() {
		if k.ID == n.me.ID || k.Public == nil || k.Status != bplog.StatusActive {
			continue
		}
		if p, ok := old[k.ID]; ok {
			n.peers = append(n.peers, p)
			continue
		}
		key, err := pairKey(n.me.Key, k.Public, n.st.UID())
		if err != nil {
			n.o.Logger.Warn("radio: no pair key for a peer", "key", k.ID, "err", err)
			continue
		}
		n.peers = append(n.peers, &peer{keyID: k.ID, pub: k.Public, hint: hintOf(k.Public), key: key,
			delivered: map[string]time.Time{}, rx: map[uint16]*reasm{}})
	}
	// Peers stay in keys.json order (not key order), so that a simulation
	// with fresh keys behaves the same for a seed.
}

func (n *Node) viewLocked(ctx context.Context) (*logView, error) {
	d := n.st.Frontier().Digest()
	if n.view != nil && n.view.digest == d {
		return n.view, nil
	}
	// Catch up with what changed; a store that moves on while the view
	// reads gets another round, and a view that cannot follow (it does
	// not fit the store's answer) is rebuilt from the whole log.
	for try := 0; n.view != nil && try < 3; try++ {
		ok, err := n.view.update(ctx, n.st)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if d = n.st.Frontier().Digest(); n.view.digest == d {
			return n.view, nil
		}
	}
	v, err := buildView(ctx, n.st)
	if err != nil {
		return nil, err
	}
	n.view = v
	return v, nil
}

func (n *Node) digestLocked() [digestSize]byte {
	d := n.st.Frontier().Digest()
	return [digestSize]byte(d[:digestSize])
}

func (n *Node) nextCtrLocked() uint64 {
	n.ctr++
	return n.ctr
}

// queueLocked queues a unicast frame for p. The first 8 bytes of a queue
// entry name the peer (the binary key id), so that the frame is sealed
// with a fresh counter when it leaves; they take the place of the tag in
// the byte count the budget sees.
func (n *Node) queueLocked(p *peer, class lora.Class, typ byte, body []byte) bool {
	f := unicast(typ, n.hint, p.hint, body)
	kb, _ := keyBytes(p.keyID)
	entry := append(kb, f[:len(f)-tagSize]...)
	ev, err := n.queue.Push(class, entry)
	n.stats.QueueEvicted += uint64(ev)
	if ev > 0 {
		// An evicted fragment leaves its transfer waiting for an ACK
		// that never comes; the timeout resends what is missing.
		for _, q := range n.peers {
			if q.tx != nil {
				q.tx.queued = 0
			}
		}
	}
	return err == nil
}

// Deadline is when Tick next has something to do.
func (n *Node) Deadline() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.hello
	for _, p := range n.peers {
		if p.tx != nil && !p.tx.due.IsZero() && p.tx.due.Before(d) {
			d = p.tx.due
		}
		for _, r := range p.rx {
			if e := r.last.Add(n.o.ReassemblyTimeout); e.Before(d) {
				d = e
			}
		}
	}
	return d
}

// Tick runs the timers: transfer timeouts, expired reassemblies, and new
// transfers for peers with a plan.
func (n *Node) Tick(ctx context.Context, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshPeersLocked()
	if dig := n.digestLocked(); dig != n.helloAt {
		if soon := now.Add(n.jitterLocked(n.o.HelloSoon)); soon.Before(n.hello) {
			n.hello = soon
		}
	}
	for _, p := range n.peers {
		for id, r := range p.rx {
			if now.Sub(r.last) >= n.o.ReassemblyTimeout {
				delete(p.rx, id)
				n.rxCount--
			}
		}
		if t := p.tx; t != nil && !t.due.IsZero() && !now.Before(t.due) {
			// A peer heard since the last fragment left is alive, only
			// slow (its own duty cycle): that wait is no retry.
			if !p.heard.After(t.sentAt) {
				t.retries++
			}
			t.backoff = min(t.backoff+1, 8)
			if t.retries > n.o.MaxRetries {
				n.o.Logger.Info("radio: peer silent, transfer dropped", "peer", p.keyID)
				n.stats.TransfersDropped++
				p.tx, p.plan = nil, nil
				continue
			}
			n.o.Logger.Debug("radio: ack timeout", "me", n.st.Actor(), "peer", p.keyID, "id", t.id, "retries", t.retries)
			n.resendLocked(now, p, t, true)
		}
		if p.tx == nil && len(p.plan) > 0 {
			n.startTransferLocked(ctx, now, p)
		}
	}
}

// resendLocked queues the fragments of t not yet acknowledged; with
// lastOnly just the last of them. The last fragment queued carries the
// ACK request flag, so that the peer answers with its bitmap even when it
// is not the transfer's final fragment.
func (n *Node) resendLocked(now time.Time, p *peer, t *transfer, lastOnly bool) {
	t.due = time.Time{}
	last := -1
	for i := len(t.frags) - 1; i >= 0; i-- {
		if !t.acked[i] {
			last = i
			break
		}
	}
	if last < 0 {
		// Every fragment arrived but the final ACK did not: ask again
		// (the peer remembers finished transfers and repeats it).
		last = len(t.frags) - 1
	}
	for i := range t.frags {
		if (t.acked[i] && i != last) || (lastOnly && i != last) {
			continue
		}
		f := t.frags[i]
		if i == last {
			f = append([]byte(nil), f...)
			f[2] |= ackRequest
		}
		if n.queueLocked(p, t.b.class, typeData, f) {
			t.queued++
		}
	}
	if t.queued == 0 {
		t.due = now.Add(n.o.AckTimeout) // nothing could be queued: retry later
	}
}

// NextFrame returns the next frame to transmit now, or how long to wait
// before asking again (0 and nil: nothing to send). The frame's airtime
// is recorded in the budget: the caller must send it at once.
func (n *Node) NextFrame(now time.Time) ([]byte, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshPeersLocked()
	if now.Before(n.busy) {
		if n.queue.Len() > 0 || !now.Before(n.hello) {
			return nil, n.busy.Sub(now)
		}
		return nil, 0
	}
	var wait time.Duration = -1
	if !now.Before(n.hello) {
		dig := n.digestLocked()
		f := buildHello(n.hint, n.ctr+1, dig, n.peers)
		w, err := n.budget.Take(now, len(f))
		switch {
		case err != nil:
			n.o.Logger.Error("radio: a hello can never be sent", "err", err)
			n.hello = now.Add(n.o.HelloEvery)
		case w == 0:
			n.ctr++
			n.hello = now.Add(n.jitterLocked(n.o.HelloEvery))
			n.helloAt = dig
			n.stats.HellosSent++
			return n.sentLocked(f), 0
		default:
			wait = w
		}
	}
	if now.Before(n.hold) && n.queue.Len() > 0 {
		w := n.hold.Sub(now)
		if wait < 0 || w < wait {
			wait = w
		}
		return nil, wait
	}
	for {
		entry, _, w, err := n.queue.Next(now, n.budget)
		if err != nil {
			n.o.Logger.Error("radio: frame can never be sent", "err", err)
			n.afterSendLocked(now, entry)
			continue
		}
		if entry == nil {
			if w > 0 && (wait < 0 || w < wait) {
				wait = w
			}
			break
		}
		p := n.afterSendLocked(now, entry)
		if p == nil {
			continue
		}
		f := append(entry[8:], make([]byte, tagSize)...)
		seal(f, n.nextCtrLocked(), p.key)
		return n.sentLocked(f), 0
	}
	if wait < 0 {
		wait = 0
	}
	return nil, wait
}

func (n *Node) sentLocked(f []byte) []byte {
	n.stats.BytesSent += uint64(len(f))
	n.stats.Airtime += n.o.Params.Airtime(len(f))
	switch f[0] & 0x0f {
	case typeFrontier:
		n.stats.FrontiersSent++
	case typeData:
		n.stats.DataSent++
	case typeAck:
		n.stats.AcksSent++
	}
	return f
}

// afterSendLocked finds the peer a queue entry is for and, for a data
// fragment, notes that it left the queue.
func (n *Node) afterSendLocked(now time.Time, entry []byte) *peer {
	if len(entry) < 8+headerSize {
		return nil
	}
	id := bplog.KeyIDPrefix + hex.EncodeToString(entry[:8])
	for _, p := range n.peers {
		if p.keyID != id {
			continue
		}
		f := entry[8:]
		if f[0]&0x0f == typeData && p.tx != nil && len(f) > headerSize+2 && binary.BigEndian.Uint16(f[headerSize:]) == p.tx.id {
			if p.tx.queued > 0 {
				p.tx.queued--
			}
			if p.tx.queued == 0 {
				// The last queued fragment leaves now: wait for its
				// airtime and the ACK.
				p.tx.due = now.Add(n.o.Params.Airtime(len(entry)) + n.jitterLocked(min(n.o.AckTimeout<<p.tx.backoff, time.Hour)))
				p.tx.sentAt = now
			}
		}
		return p
	}
	return nil
}

// ChannelBusy tells the Node that the radio hears a transmission that
// lasts until until (listen before talk: a radio with channel activity
// detection, or the simulator): it sends nothing before then, nor for a
// random backoff after.
func (n *Node) ChannelBusy(now, until time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !until.After(now) {
		return
	}
	b := until.Add(time.Duration(n.randLocked() * float64(n.o.Params.Airtime(lora.MaxPHYPayload))))
	if b.After(n.busy) {
		n.busy = b
	}
}

// HandleFrame processes one received frame.
func (n *Node) HandleFrame(ctx context.Context, now time.Time, fr lora.Frame) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshPeersLocked()
	n.stats.FramesHeard++
	n.stats.BytesReceived += uint64(len(fr.Payload))
	n.hold = now.Add(time.Duration(2 * n.randLocked() * float64(n.o.Params.Airtime(lora.MaxPHYPayload))))
	f := fr.Payload
	h, err := parseHead(f)
	if err != nil {
		n.stats.BadFrames++
		return
	}
	var p *peer
	if h.typ == typeHello {
		head, tags, dig, err := helloTagsFor(f, n.hint)
		if err != nil {
			n.stats.BadFrames++
			return
		}
		p = n.authLocked(h, func(q *peer) bool {
			t := tag(q.key, head)
			for _, x := range tags {
				if string(x) == string(t[:]) {
					return true
				}
			}
			return false
		})
		if p == nil {
			return
		}
		p.heard, p.digest = now, dig
		n.onHelloLocked(ctx, now, p, dig)
		return
	}
	if h.dst != n.hint {
		return // for someone else
	}
	p = n.authLocked(h, func(q *peer) bool { return checkTag(f, q.key) })
	if p == nil {
		return
	}
	p.heard = now
	body := f[headerSize : len(f)-tagSize]
	switch h.typ {
	case typeFrontier:
		n.onFrontierLocked(ctx, now, p, body)
	case typeData:
		n.onDataLocked(ctx, now, p, body)
	case typeAck:
		n.onAckLocked(ctx, now, p, body)
	default:
		n.stats.BadFrames++
	}
}

// authLocked finds the peer that sent a frame with head h and for which
// ok (the tag check) holds, and checks the counter against replays.
func (n *Node) authLocked(h frameHead, ok func(*peer) bool) *peer {
	for _, q := range n.peers {
		if q.hint != h.src || !ok(q) {
			continue
		}
		if !q.win.check(h.ctr) {
			n.stats.Replays++
			return nil
		}
		q.win.mark(h.ctr)
		return q
	}
	n.stats.AuthFailures++
	return nil
}

func (n *Node) onHelloLocked(ctx context.Context, now time.Time, p *peer, dig [digestSize]byte) {
	if dig == n.digestLocked() {
		// p holds what I hold: whatever I planned for it, it got
		// elsewhere.
		p.plan, p.tx = nil, nil
		return
	}
	n.sendFrontierLocked(ctx, now, p)
}

// sendFrontierLocked queues my frontier for p, at most once per
// FrontierEvery unless my frontier changed since.
func (n *Node) sendFrontierLocked(ctx context.Context, now time.Time, p *peer) {
	v, err := n.viewLocked(ctx)
	if err != nil {
		n.o.Logger.Error("radio: read the log", "err", err)
		return
	}
	if !p.frontierSent.IsZero() && now.Sub(p.frontierSent) < n.o.FrontierEvery {
		return
	}
	for _, r := range p.rx {
		if now.Sub(r.last) < n.o.AckTimeout {
			// p is sending me a batch: it knows enough for now. (A
			// transfer silent longer may be one a restarted p forgot.)
			return
		}
	}
	queued := false
	for _, body := range encodeFrontier(v, n.o.MTU-headerSize-tagSize) {
		queued = n.queueLocked(p, lora.Own, typeFrontier, body) || queued
	}
	if queued {
		p.frontierSent, p.frontierDig = now, v.digest
	}
}

func (n *Node) onFrontierLocked(ctx context.Context, now time.Time, p *peer, body []byte) {
	page, err := parseFrontier(body)
	if err != nil {
		n.stats.BadFrames++
		return
	}
	v, err := n.viewLocked(ctx)
	if err != nil {
		n.o.Logger.Error("radio: read the log", "err", err)
		return
	}
	p.their.add(page)
	p.theirAt = now
	// Do they hold something I lack?
	behind := false
	for h, e := range page.entries {
		a, ok := v.byHash[h]
		if !ok || e.count > uint64(len(v.chains[a])) || (e.count == uint64(len(v.chains[a])) && v.held(a, e) != int(e.count)) {
			behind = true
		}
	}
	if behind {
		n.sendFrontierLocked(ctx, now, p)
	}
	n.planLocked(now, v, p)
	if p.tx == nil && len(p.plan) > 0 {
		n.startTransferLocked(ctx, now, p)
	}
}

// planLocked computes the batches p lacks from its last frontier: my own
// events newest batch first, then every other actor's, oldest first (a
// device carries everyone's events). The first batch of each actor goes in
// the Own or Relay class, later ones as Backfill.
func (n *Node) planLocked(now time.Time, v *logView, p *peer) {
	for id, t := range p.delivered {
		if now.Sub(t) >= n.o.ResendAfter {
			delete(p.delivered, id)
		}
	}
	inFlight := map[string]bool{}
	if p.tx != nil {
		for _, id := range p.tx.b.ids {
			inFlight[id] = true
		}
	}
	actors := make([]string, 0, len(v.chains))
	for a := range v.chains {
		actors = append(actors, a)
	}
	sort.Strings(actors)
	own := n.st.Actor()
	var plan []*batch
	for _, a := range actors {
		e, known := p.their.lookup(a)
		if !known {
			continue // in a page of its frontier not heard yet
		}
		held := 0
		if e.count > 0 {
			held = v.held(a, e)
		}
		var miss []int
		for _, i := range v.chains[a][held:] {
			id := v.events[i].ID
			if _, ok := p.delivered[id]; !ok && !inFlight[id] {
				miss = append(miss, i)
			}
		}
		n.o.Logger.Debug("radio: plan", "me", n.st.Actor(), "peer", p.keyID, "actor", a, "mine", len(v.chains[a]), "held", held, "missing", len(miss))
		if len(miss) == 0 {
			continue
		}
		var chunks [][]int
		if a == own {
			for end := len(miss); end > 0; end -= n.o.BatchEvents {
				chunks = append(chunks, miss[max(0, end-n.o.BatchEvents):end])
			}
		} else {
			for start := 0; start < len(miss); start += n.o.BatchEvents {
				chunks = append(chunks, miss[start:min(len(miss), start+n.o.BatchEvents)])
			}
		}
		for k, c := range chunks {
			class := lora.Relay
			if a == own {
				class = lora.Own
			}
			if k > 0 {
				class = lora.Backfill
			}
			b := &batch{class: class}
			for _, i := range c {
				b.ids = append(b.ids, v.events[i].ID)
			}
			plan = append(plan, b)
		}
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].class < plan[j].class })
	p.plan = plan
}

// A dictionary cut names as few actors as fill the dictionary: each
// costs about 6 bytes in every batch header, and the dictionary holds
// only the newest 100 KiB of residuals (several hundred events; one
// actor's newest cutEvents compress as well as more actors' would).
const (
	maxCutActors = 8
	cutEvents    = 200
)

// cutLocked is the dictionary cut for p: per actor, how many events of
// its chain p holds (by its last frontier), for the actors whose newest
// event p holds is newest, until they hold cutEvents events or
// maxCutActors actors are named; in label order.
func (n *Node) cutLocked(v *logView, p *peer) []CutEntry {
	type cand struct {
		actor string
		k     int
	}
	var cs []cand
	for a := range v.chains {
		if e, ok := p.their.entries[ActorHash(a)]; ok {
			if k := v.held(a, e); k > 0 {
				cs = append(cs, cand{a, k})
			}
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		x := v.events[v.chains[cs[i].actor][cs[i].k-1]].Item()
		y := v.events[v.chains[cs[j].actor][cs[j].k-1]].Item()
		if c := bplog.CompareKey(x, y); c != 0 {
			return c > 0
		}
		return cs[i].actor < cs[j].actor
	})
	held := 0
	for k, c := range cs {
		held += c.k
		if held >= cutEvents || k+1 == maxCutActors {
			cs = cs[:k+1]
			break
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].actor < cs[j].actor })
	cut := make([]CutEntry, 0, len(cs))
	for _, c := range cs {
		cut = append(cut, CutEntry{Actor: ActorHash(c.actor), Count: uint64(c.k)})
	}
	return cut
}

func cutKey(cut []CutEntry) string { return string(appendCut(nil, cut)) }

// dictLocked returns the dictionary for cut, from the cache or built
// from v (nil when v lacks part of it).
func (n *Node) dictLocked(v *logView, cut []CutEntry) *Dict {
	if len(cut) == 0 {
		return nil
	}
	k := cutKey(cut)
	for _, d := range n.dicts {
		if cutKey(d.Cut) == k {
			return d
		}
	}
	var events []*bplog.Event
	for _, c := range cut {
		if a, ok := v.byHash[c.Actor]; ok {
			events = append(events, v.chainEvents(a, int(min(c.Count, uint64(len(v.chains[a])))))...)
		}
	}
	d := BuildDict(events, cut)
	if d == nil {
		return nil
	}
	n.dicts = append(n.dicts, d)
	if len(n.dicts) > 4 {
		n.dicts = n.dicts[1:]
	}
	return d
}

// startTransferLocked encodes p's next batch and queues its fragments.
func (n *Node) startTransferLocked(ctx context.Context, now time.Time, p *peer) {
	v, err := n.viewLocked(ctx)
	if err != nil {
		return
	}
	b := p.plan[0]
	p.plan = p.plan[1:]
	n.sendBatchLocked(now, v, p, b, false)
}

func (n *Node) sendBatchLocked(now time.Time, v *logView, p *peer, b *batch, noDict bool) {
	lines := make([][]byte, 0, len(b.ids))
	for _, id := range b.ids {
		if x, ok := v.at[id]; ok {
			lines = append(lines, v.lines[x])
		}
	}
	held := map[string]int{}
	for h, e := range p.their.entries {
		if a, ok := v.byHash[h]; ok {
			held[a] = v.held(a, e)
		}
	}
	// Only what its frontier shows counts as held: an event delivered
	// earlier may wait there as pending, outside its log.
	opts := EncodeOptions{Holds: func(actor, id string) bool {
		pos, ok := v.pos[id]
		return ok && pos <= held[actor]
	}, KeyOf: v.keyOf}
	if !noDict {
		opts.Dict = n.dictLocked(v, n.cutLocked(v, p))
	}
	blob, err := n.codec.Encode(lines, opts)
	room := n.o.MTU - DataOverhead
	if err != nil || (len(blob)+room-1)/room > maxFragments {
		if len(b.ids) > 1 { // too large: split it
			h := len(b.ids) / 2
			p.plan = append([]*batch{{class: b.class, ids: b.ids[h:]}}, p.plan...)
			n.sendBatchLocked(now, v, p, &batch{class: b.class, ids: b.ids[:h]}, noDict)
			return
		}
		n.o.Logger.Error("radio: an event does not fit a transfer", "id", b.ids[0], "err", err)
		return
	}
	if !p.xferInit {
		p.nextXfer, p.xferInit = n.xferBase, true
	}
	t := &transfer{id: p.nextXfer, b: b, noDict: noDict}
	p.nextXfer++
	total := (len(blob) + room - 1) / room
	for i := range total {
		frag := binary.BigEndian.AppendUint16(nil, t.id)
		frag = append(frag, byte(i), byte(total))
		frag = append(frag, blob[i*room:min(len(blob), (i+1)*room)]...)
		t.frags = append(t.frags, frag)
	}
	t.acked = make([]bool, total)
	p.tx = t
	n.resendLocked(now, p, t, false)
	n.stats.EventsSent += uint64(len(b.ids))
}

func (n *Node) onAckLocked(ctx context.Context, now time.Time, p *peer, body []byte) {
	if len(body) < 4 {
		n.stats.BadFrames++
		return
	}
	id, status, total := binary.BigEndian.Uint16(body), body[2], int(body[3])
	t := p.tx
	n.o.Logger.Debug("radio: ack", "me", n.st.Actor(), "peer", p.keyID, "id", id, "status", status, "total", total, "tx", t != nil && t.id == id)
	if t == nil || t.id != id || total != len(t.frags) {
		return // an old transfer's ACK
	}
	switch status {
	case ackDone, ackBadBatch:
		for _, x := range t.b.ids {
			p.delivered[x] = now
		}
		if status == ackDone {
			n.stats.BatchesDone++
		} else {
			n.stats.BatchesFailed++
		}
		p.tx = nil
		if len(p.plan) > 0 {
			n.startTransferLocked(ctx, now, p)
		}
	case ackNoDict:
		n.stats.DictMisses++
		v, err := n.viewLocked(ctx)
		if err != nil {
			return
		}
		p.tx = nil
		n.sendBatchLocked(now, v, p, t.b, true)
	case ackRefused:
		t.due = now.Add(n.o.AckTimeout)
	case ackPartial:
		t.backoff = 0 // the peer answers: no congestion
		bm := body[4:]
		if len(bm) < (total+7)/8 {
			n.stats.BadFrames++
			return
		}
		for i := range total {
			if bm[i/8]&(1<<(i%8)) != 0 {
				t.acked[i] = true
			}
		}
		if t.queued == 0 {
			n.resendLocked(now, p, t, false)
		}
	default:
		n.stats.BadFrames++
	}
}

func (n *Node) ackLocked(p *peer, id uint16, status byte, total int, have [][]byte) {
	body := binary.BigEndian.AppendUint16(nil, id)
	body = append(body, status, byte(total))
	if status == ackPartial {
		bm := make([]byte, (total+7)/8)
		for i, f := range have {
			if f != nil {
				bm[i/8] |= 1 << (i % 8)
			}
		}
		body = append(body, bm...)
	}
	n.queueLocked(p, lora.Own, typeAck, body)
}

func (n *Node) onDataLocked(ctx context.Context, now time.Time, p *peer, body []byte) {
	if len(body) < dataExtra+1 {
		n.stats.BadFrames++
		return
	}
	id, idx, total := binary.BigEndian.Uint16(body), int(body[2]&^ackRequest), int(body[3])
	ackReq := body[2]&ackRequest != 0 || idx == total-1
	if total == 0 || idx >= total || total > maxFragments {
		n.stats.BadFrames++
		return
	}
	for _, d := range p.done {
		if d.id == id && now.Sub(d.at) < doneFor {
			n.ackLocked(p, id, ackDone, total, nil) // our ACK was lost
			return
		}
	}
	r := p.rx[id]
	if r != nil && r.total != total {
		delete(p.rx, id)
		n.rxCount--
		r = nil
	}
	if r == nil {
		if len(p.rx) >= maxRxPerPeer || n.rxCount >= maxRx {
			if !n.evictLocked(p) {
				n.stats.RxRefused++
				n.ackLocked(p, id, ackRefused, total, nil)
				return
			}
		}
		r = &reasm{total: total, frags: make([][]byte, total)}
		p.rx[id] = r
		n.rxCount++
	}
	r.last = now
	if r.frags[idx] == nil {
		r.frags[idx] = append([]byte(nil), body[dataExtra:]...)
		r.have++
	}
	if r.have < r.total {
		if ackReq {
			n.ackLocked(p, id, ackPartial, total, r.frags)
		}
		return
	}
	delete(p.rx, id)
	n.rxCount--
	var blob []byte
	for _, f := range r.frags {
		blob = append(blob, f...)
	}
	status := n.ingestBatchLocked(ctx, p, blob)
	if status != ackNoDict {
		p.done = append(p.done, doneXfer{id, now})
		if len(p.done) > doneMemory {
			p.done = p.done[1:]
		}
	}
	n.ackLocked(p, id, status, total, nil)
}

// evictLocked drops the oldest half-received transfer of p, or of anyone
// when p has none, if it has been idle for a tenth of the timeout.
func (n *Node) evictLocked(p *peer) bool {
	var op *peer
	var oid uint16
	var old time.Time
	for _, q := range n.peers {
		if len(p.rx) >= maxRxPerPeer && q != p {
			continue
		}
		for id, r := range q.rx {
			if op == nil || r.last.Before(old) {
				op, oid, old = q, id, r.last
			}
		}
	}
	if op == nil {
		return false
	}
	delete(op.rx, oid)
	n.rxCount--
	return true
}

func (n *Node) ingestBatchLocked(ctx context.Context, p *peer, blob []byte) byte {
	h, err := ParseBatchHeader(blob)
	if err != nil {
		n.stats.BadFrames++
		return ackBadBatch
	}
	v, err := n.viewLocked(ctx)
	if err != nil {
		return ackRefused
	}
	var d *Dict
	if h.HasDict {
		d = n.dictLocked(v, h.Cut)
		if d == nil || d.ID != h.DictID {
			n.stats.DictMisses++
			return ackNoDict
		}
	}
	lines, err := n.codec.Decode(h, d, v.resolve)
	if errors.Is(err, ErrUnknownDict) {
		return ackNoDict
	}
	if err != nil {
		n.o.Logger.Warn("radio: batch does not decode", "peer", p.keyID, "err", err)
		n.stats.BadFrames++
		return ackBadBatch
	}
	n.stats.EventsReceived += uint64(len(lines))
	res, err := n.st.Ingest(ctx, lines, "lora:"+p.keyID)
	if err != nil {
		n.stats.IngestFailure++
		n.o.Logger.Error("radio: ingest", "peer", p.keyID, "err", err)
		return ackRefused
	}
	n.stats.EventsApplied += uint64(len(res.Applied))
	n.o.Logger.Debug("radio: batch ingested", "me", n.st.Actor(), "peer", p.keyID, "events", len(lines), "applied", len(res.Applied),
		"duplicates", res.Duplicates, "pending", len(res.Pending), "rejected", len(res.Rejected), "quarantined", len(res.Quarantined))
	return ackDone
}

// peerName is a short printable name for logs and status.
func peerName(id string) string { return strings.TrimPrefix(id, bplog.KeyIDPrefix) }
