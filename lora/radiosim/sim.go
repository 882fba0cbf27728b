// Package radiosim runs several backpack devices, each with a real
// backpack on disk and its own key, that sync over simulated LoRa radios
// with the radiosync protocol. Time is virtual and the run is a
// single-threaded discrete-event simulation: frames take their airtime,
// duty-cycle budgets hold, overlapping transmissions may collide, and
// loss, duplication, reordering, range and partitions are decided by a
// hash of the seed, so that runs repeat.
// It drives the protocol tests and `backpack sim`.
package radiosim

import (
	"container/heap"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// Partition makes, from From to To (simulated time since the start),
// devices in one group hear only each other; devices in no group hear no
// one.
type Partition struct {
	From, To time.Duration
	Groups   [][]int
}

// Config describes a simulation.
type Config struct {
	Devices int    // default 3
	Seed    uint64 // every random decision derives from it
	// Params and Region of every radio (zero: SF9/125 kHz, CR 4/5, and
	// EU868 1 %).
	Params lora.Params
	Region lora.Region
	// Loss, Duplicate and Reorder are per frame and receiver.
	Loss, Duplicate, Reorder float64
	// Line puts the devices in a line (each hears only its neighbours);
	// otherwise everyone hears everyone. Hears, when set, overrides both:
	// Hears[i][j] says whether j hears i.
	Line  bool
	Hears [][]bool
	// HalfDuplex makes a device deaf to frames that end while it
	// transmits.
	HalfDuplex bool
	// Collisions: a frame is lost at a receiver that hears another
	// transmission overlapping it in time (both are lost there; no
	// capture effect). Radios then listen before they talk, as LoRa
	// radios with channel activity detection do (the RNode firmware's
	// CSMA): a device that hears a transmission in progress tells its
	// Node (radiosync.Node.ChannelBusy), which waits for the end and a
	// random backoff. Two devices that start within the same instant, or
	// that cannot hear each other, still collide. NoCarrierSense turns
	// listening off (every overlap collides).
	Collisions, NoCarrierSense bool

	Partitions []Partition
	// Offline is how many events each device writes before the radios
	// start (as if it had been out of range); OfflineByDevice overrides it
	// per device.
	Offline         int
	OfflineByDevice []int
	// SharedActors and SharedEvents give every device, before the
	// radios start, the same history of SharedActors more actors
	// ("actor_00", ...) with SharedEvents events each (default 3),
	// written by device 0: a backpack with many actors that the devices
	// already share.
	SharedActors, SharedEvents int
	// Writes schedule events written while the simulation runs.
	Writes []Write
	// Forks: at the start, device Fork[0] writes an event as device
	// Fork[1]'s actor after the head it holds, while Fork[1] has written
	// past it: a fork of Fork[1]'s chain once they meet (needs Offline
	// > 0). Nil: no fork.
	Fork []int
	// Until bounds the simulated time (default 7 days).
	Until time.Duration
	// After keeps the simulation running this long after convergence, to
	// measure what in-sync devices send (default 0: stop at once); frames
	// in the first Settle of it (the last ACKs and frontiers) are not
	// counted.
	After, Settle time.Duration
	// Node configures every device's protocol (Params and Region are
	// taken from above).
	Node radiosync.Options
	// Dir holds the backpacks (default a temp directory, removed at the
	// end).
	Dir string
	// Progress, when set, is called at each convergence check that finds
	// the devices apart, with the simulated time.
	Progress func(time.Duration)
}

// Write is one event written during the run.
type Write struct {
	At     time.Duration
	Device int
}

// DeviceReport is what one device did.
type DeviceReport struct {
	Actor     string
	KeyID     string
	Events    int // events in its log at the end
	StateHash string
	Counters  radiosync.Counters
	FramesOut int
	BytesOut  int
	Airtime   time.Duration
	FramesIn  int // frames that reached it
	Lost      int // frames to it lost on the air (or while it sent)
	Collided  int // frames to it lost to another transmission overlapping them
	// MaxWindowAirtime is the most airtime the device used in any window
	// of its region (checked over every transmission; must stay within
	// the allowance).
	MaxWindowAirtime time.Duration
}

// Report is the result of a simulation.
type Report struct {
	Converged   bool
	ConvergedAt time.Duration // simulated, from the start
	End         time.Duration
	Written     int // events written during the simulation (offline ones included)
	Devices     []DeviceReport
	SameState   bool // every device has the same state hash
	// Totals until convergence (or the end, without it).
	Frames  int
	Bytes   int
	Airtime time.Duration
	// Collisions counts frames lost to collisions at some receiver
	// (over the whole run).
	Collisions int
	// In-sync traffic during Config.After (after Config.Settle), and how
	// many of those frames were hellos.
	AfterFrames int
	AfterBytes  int
	AfterHellos int
}

// Start is the simulated clock's origin.
var Start = time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)

type device struct {
	bp      *store.Backpack
	node    *radiosync.Node
	keyFile string
	pollAt  time.Time
	busy    time.Time // transmitting until
	seq     uint64
	rep     DeviceReport
	txs     []txRec
	air     []onAir // transmissions it hears that may still be on the air
}

// onAir is a transmission as one receiver hears it, and its arrivals
// there (none when the frame was lost anyway).
type onAir struct {
	start, end time.Time
	arrivals   []*simEvent
}

type txRec struct {
	start time.Time
	air   time.Duration
}

type eventKind int

const (
	evPoll eventKind = iota
	evArrive
	evWrite
)

type simEvent struct {
	at      time.Time
	seq     uint64
	kind    eventKind
	dev     int
	start   time.Time // evArrive: when the transmission began
	payload []byte
	// collided: another transmission overlapped this one at the
	// receiver.
	collided bool
}

type queue []*simEvent

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *queue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// Sim is one simulation run.
type Sim struct {
	cfg  Config
	now  time.Time
	devs []*device
	q    queue
	seq  uint64
	uid  string
	dir  string
	temp bool
	rep  Report
	// writes counts the events written so far.
	writes int
}

// New creates the devices' backpacks (device 0 starts the backpack, the
// others join it and device 0 trusts their keys, so that every device
// knows every key) and writes the offline events.
func New(ctx context.Context, cfg Config) (*Sim, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = 3
	}
	if cfg.Params == (lora.Params{}) {
		cfg.Params = lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if cfg.Region == (lora.Region{}) {
		cfg.Region = lora.EU868
	}
	if cfg.Until <= 0 {
		cfg.Until = 7 * 24 * time.Hour
	}
	cfg.Node.Params, cfg.Node.Region = cfg.Params, cfg.Region
	s := &Sim{cfg: cfg, now: Start, uid: fmt.Sprintf("sim-%d", cfg.Seed)}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "backpack-sim-")
		if err != nil {
			return nil, err
		}
		cfg.Dir, s.temp = d, true
	}
	s.dir = cfg.Dir
	s.cfg = cfg
	if err := s.setup(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sim) clock() time.Time {
	// Every read moves the clock on by a microsecond, so that events
	// written at one instant still get distinct timestamps.
	s.now = s.now.Add(time.Microsecond)
	return s.now
}

func (s *Sim) setup(ctx context.Context) error {
	n := s.cfg.Devices
	dirs := make([]string, n)
	keys := make([]string, n)
	for i := range n {
		dirs[i] = filepath.Join(s.dir, fmt.Sprintf("device%d", i))
		keys[i] = filepath.Join(s.dir, "keys", fmt.Sprintf("device%d.json", i))
	}
	// Device keys come from the seed, so that a run repeats exactly
	// (Ed25519 signatures are deterministic).
	devKey := func(i int) *bplog.PrivateKey {
		seed := sha256.Sum256(fmt.Appendf(nil, "backpack sim device key %d/%d", s.cfg.Seed, i))
		priv := ed25519.NewKeyFromSeed(seed[:])
		return &bplog.PrivateKey{ID: bplog.KeyID(priv.Public().(ed25519.PublicKey)), Key: priv}
	}
	if _, err := store.Init(ctx, dirs[0], store.InitOptions{UID: s.uid, Actor: "device0", KeyFile: keys[0], Now: s.clock, Key: devKey(0)}); err != nil {
		return err
	}
	var pubs []string
	for i := 1; i < n; i++ {
		res, err := store.Join(ctx, dirs[0], dirs[i], store.JoinOptions{Actor: fmt.Sprintf("device%d", i), KeyFile: keys[i], Key: devKey(i), Now: s.clock})
		if err != nil {
			return err
		}
		pubs = append(pubs, res.PublicKey)
	}
	for i := range n {
		bp, err := store.Open(ctx, dirs[i], store.Options{KeyFile: keys[i], Now: s.clock})
		if err != nil {
			return err
		}
		s.devs = append(s.devs, &device{bp: bp, keyFile: keys[i]})
	}
	for _, p := range pubs {
		pub, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			return err
		}
		if _, _, err := s.devs[0].bp.TrustKey(ctx, pub, []string{"attestation"}); err != nil {
			return err
		}
	}
	if err := s.writeShared(); err != nil {
		return err
	}
	lines, err := s.devs[0].bp.Delta(ctx, nil)
	if err != nil {
		return err
	}
	for _, d := range s.devs[1:] {
		if _, err := d.bp.Ingest(ctx, lines, "sim setup"); err != nil {
			return err
		}
	}
	// Offline events.
	var forkHead string
	for i, d := range s.devs {
		k := s.cfg.Offline
		if i < len(s.cfg.OfflineByDevice) {
			k = s.cfg.OfflineByDevice[i]
		}
		if len(s.cfg.Fork) == 2 && i == s.cfg.Fork[1] {
			forkHead = d.bp.Snapshot().Heads[d.bp.Actor()].ID
		}
		for range k {
			if err := s.write(i); err != nil {
				return err
			}
		}
	}
	if len(s.cfg.Fork) == 2 && forkHead != "" {
		f, v := s.devs[s.cfg.Fork[0]], s.devs[s.cfg.Fork[1]]
		body := observation(s.writes, "fork").With("actor", canon.StringValue(v.bp.Actor()))
		if h := f.bp.Snapshot().Heads[v.bp.Actor()].ID; h != forkHead {
			return fmt.Errorf("radiosim: device %d already holds device %d's newer events; no fork", s.cfg.Fork[0], s.cfg.Fork[1])
		}
		if _, err := f.bp.Append(body); err != nil {
			return fmt.Errorf("radiosim: write the fork: %w", err)
		}
		s.writes++
	}
	for i, d := range s.devs {
		node, err := radiosync.NewNode(d.bp, s.cfg.Node)
		if err != nil {
			return err
		}
		d.node = node
		d.rep.Actor, d.rep.KeyID = d.bp.Actor(), d.bp.KeyID()
		_ = i
	}
	return nil
}

func observation(i int, subject string) canon.Value {
	var p, b canon.ObjectBuilder
	p.Set("subject", canon.StringValue(fmt.Sprintf("%s_%04d", subject, i%500))).
		Set("predicate", canon.StringValue([]string{"status", "level", "temperature_c"}[i%3])).
		Set("value", canon.IntValue(int64(i%97))).
		Set("confidence", canon.FloatValue(float64(1+i%10)/10))
	b.Set("type", canon.StringValue("OBSERVATION")).Set("namespace", canon.StringValue("local")).Set("payload", p.Value())
	return b.Value()
}

// writeShared writes the shared actors' history on device 0, one batch
// per round so that the actors' events interleave in time. They are
// not counted in Report.Written: no device needs them.
func (s *Sim) writeShared() error {
	per := s.cfg.SharedEvents
	if per <= 0 {
		per = 3
	}
	if s.cfg.SharedActors <= 0 {
		return nil
	}
	k := 0
	for range per {
		var bodies []canon.Value
		for a := range s.cfg.SharedActors {
			bodies = append(bodies, observation(k, "shared").With("actor", canon.StringValue(fmt.Sprintf("actor_%02d", a))))
			k++
		}
		if _, err := s.devs[0].bp.AppendBatch(bodies); err != nil {
			return fmt.Errorf("radiosim: write the shared history: %w", err)
		}
	}
	return nil
}

func (s *Sim) write(dev int) error {
	if _, err := s.devs[dev].bp.Append(observation(s.writes, "waterpoint")); err != nil {
		return err
	}
	s.writes++
	return nil
}

// Close closes the backpacks and removes a temp directory and the
// devices' state directories.
func (s *Sim) Close() error {
	var errs []error
	for _, d := range s.devs {
		dir := d.bp.Dir()
		errs = append(errs, d.bp.Close())
		if dev, err := store.DeviceDir(s.uid, dir); err == nil {
			os.RemoveAll(dev)
		}
	}
	if s.temp {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// Backpack returns device i's backpack (for tests to inspect).
func (s *Sim) Backpack(i int) *store.Backpack { return s.devs[i].bp }

// Node returns device i's protocol state machine.
func (s *Sim) Node(i int) *radiosync.Node { return s.devs[i].node }

// Now is the simulated time since Start.
func (s *Sim) Now() time.Duration { return s.now.Sub(Start) }

func (s *Sim) push(e *simEvent) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *Sim) poll(dev int, at time.Time) {
	d := s.devs[dev]
	if !d.pollAt.IsZero() && !at.Before(d.pollAt) {
		return
	}
	d.pollAt = at
	s.push(&simEvent{at: at, kind: evPoll, dev: dev})
}

func (s *Sim) group(dev int, at time.Duration) int {
	for _, p := range s.cfg.Partitions {
		if at < p.From || at >= p.To {
			continue
		}
		for g, ds := range p.Groups {
			for _, d := range ds {
				if d == dev {
					return g
				}
			}
		}
		return -1 - dev
	}
	return 0
}

func (s *Sim) hears(from, to int, at time.Duration) bool {
	if from == to {
		return false
	}
	switch {
	case s.cfg.Hears != nil:
		if from >= len(s.cfg.Hears) || to >= len(s.cfg.Hears[from]) || !s.cfg.Hears[from][to] {
			return false
		}
	case s.cfg.Line:
		if from-to != 1 && to-from != 1 {
			return false
		}
	}
	return s.group(from, at) == s.group(to, at)
}

// chance is a reproducible number in [0, 1) for one decision.
func (s *Sim) chance(from int, seq uint64, to int, what uint64) float64 {
	x := s.cfg.Seed
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

func (s *Sim) transmit(dev int, f []byte) time.Duration {
	d := s.devs[dev]
	air := s.cfg.Params.Airtime(len(f))
	d.seq++
	d.busy = s.now.Add(air)
	d.rep.FramesOut++
	d.rep.BytesOut += len(f)
	d.rep.Airtime += air
	d.txs = append(d.txs, txRec{s.now, air})
	if s.rep.Converged {
		if s.Now() >= s.rep.ConvergedAt+s.cfg.Settle {
			s.rep.AfterFrames++
			s.rep.AfterBytes += len(f)
			if radiosync.IsHello(f) {
				s.rep.AfterHellos++
			}
		}
	} else {
		s.rep.Frames++
		s.rep.Bytes += len(f)
		s.rep.Airtime += air
	}
	at := s.Now()
	for r := range s.devs {
		if !s.hears(dev, r, at) {
			continue
		}
		var arrivals []*simEvent
		if s.chance(dev, d.seq, r, 1) < s.cfg.Loss {
			s.devs[r].rep.Lost++
		} else {
			arrive := s.now.Add(air)
			if s.chance(dev, d.seq, r, 2) < s.cfg.Reorder {
				arrive = arrive.Add(time.Duration((1 + 3*s.chance(dev, d.seq, r, 3)) * float64(air)))
			}
			p := append([]byte(nil), f...)
			arrivals = append(arrivals, &simEvent{at: arrive, kind: evArrive, dev: r, start: s.now, payload: p})
			if s.chance(dev, d.seq, r, 4) < s.cfg.Duplicate {
				arrivals = append(arrivals, &simEvent{at: arrive.Add(air), kind: evArrive, dev: r, start: s.now, payload: p})
			}
		}
		if s.cfg.Collisions {
			s.collide(s.devs[r], onAir{start: s.now, end: s.now.Add(air), arrivals: arrivals})
		}
		for _, a := range arrivals {
			s.push(a)
		}
	}
	return air
}

// collide adds a transmission to what r hears: it and every
// transmission still on the air there destroy each other.
func (s *Sim) collide(r *device, t onAir) {
	keep := r.air[:0]
	for _, o := range r.air {
		if !o.end.After(t.start) {
			continue
		}
		keep = append(keep, o)
		for _, a := range append(o.arrivals, t.arrivals...) {
			a.collided = true
		}
	}
	r.air = append(keep, t)
}

// channelBusy returns until when device d hears a transmission in
// progress (zero when it hears none). Detecting one takes two symbols of
// its preamble (channel activity detection), so devices that start
// within that time of each other do not see each other coming.
func (s *Sim) channelBusy(d *device) time.Time {
	p := s.cfg.Params
	cad := time.Duration(2 * float64(time.Second) * float64(int(1)<<p.SpreadingFactor) / float64(p.Bandwidth))
	var until time.Time
	for _, o := range d.air {
		if !o.start.Add(cad).After(s.now) && o.end.After(s.now) && o.end.After(until) {
			until = o.end
		}
	}
	return until
}

// converged reports whether every device holds the same frontier.
func (s *Sim) converged() bool {
	first := s.devs[0].bp.Frontier().Digest()
	for _, d := range s.devs[1:] {
		if d.bp.Frontier().Digest() != first {
			return false
		}
	}
	return true
}

// Run runs the simulation until the devices converge (and Config.After
// more) or Config.Until passes.
func (s *Sim) Run(ctx context.Context) (*Report, error) {
	for i, d := range s.devs {
		d.node.Start(s.now)
		s.poll(i, s.now)
	}
	for _, w := range s.cfg.Writes {
		if w.Device < 0 || w.Device >= len(s.devs) {
			return nil, fmt.Errorf("radiosim: write on device %d of %d", w.Device, len(s.devs))
		}
		s.push(&simEvent{at: Start.Add(w.At), kind: evWrite, dev: w.Device})
	}
	pendingWrites := len(s.cfg.Writes)
	until := Start.Add(s.cfg.Until)
	var stopAt time.Time
	for s.q.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := heap.Pop(&s.q).(*simEvent)
		if e.at.After(until) || (!stopAt.IsZero() && e.at.After(stopAt)) {
			break
		}
		if e.at.After(s.now) {
			s.now = e.at
		}
		d := s.devs[e.dev]
		check := false
		switch e.kind {
		case evWrite:
			if err := s.write(e.dev); err != nil {
				return nil, err
			}
			pendingWrites--
			s.poll(e.dev, s.now)
			check = true
		case evArrive:
			if s.cfg.HalfDuplex && d.busy.After(e.start) { // it was sending
				d.rep.Lost++
				break
			}
			if e.collided {
				d.rep.Collided++
				s.rep.Collisions++
				break
			}
			d.rep.FramesIn++
			d.node.HandleFrame(ctx, s.now, lora.Frame{Payload: e.payload})
			s.poll(e.dev, s.now)
			check = true
		case evPoll:
			if !e.at.Equal(d.pollAt) {
				break // superseded
			}
			d.pollAt = time.Time{}
			if d.busy.After(s.now) {
				s.poll(e.dev, d.busy)
				break
			}
			if s.cfg.Collisions && !s.cfg.NoCarrierSense {
				if until := s.channelBusy(d); !until.IsZero() {
					d.node.ChannelBusy(s.now, until)
				}
			}
			d.node.Tick(ctx, s.now)
			f, wait := d.node.NextFrame(s.now)
			if f != nil {
				air := s.transmit(e.dev, f)
				s.poll(e.dev, s.now.Add(air))
				break
			}
			next := d.node.Deadline()
			switch {
			case !next.After(s.now) && wait > 0:
				next = s.now.Add(wait) // due, but the budget says wait
			case !next.After(s.now):
				next = s.now.Add(time.Millisecond)
			case wait > 0 && s.now.Add(wait).Before(next):
				next = s.now.Add(wait)
			}
			s.poll(e.dev, next)
		}
		if check && !s.rep.Converged && pendingWrites == 0 {
			if s.converged() {
				s.rep.Converged = true
				s.rep.ConvergedAt = s.Now()
				stopAt = s.now.Add(s.cfg.Settle + s.cfg.After)
				if s.cfg.After == 0 {
					break
				}
			} else if s.cfg.Progress != nil {
				s.cfg.Progress(s.Now())
			}
		}
	}
	if !s.rep.Converged {
		s.rep.ConvergedAt = 0
	}
	s.rep.End = s.Now()
	s.rep.Written = s.writes
	s.rep.SameState = true
	for _, d := range s.devs {
		d.rep.Counters = d.node.Counters()
		h, err := d.bp.StateHash()
		if err != nil {
			return nil, err
		}
		d.rep.StateHash = h
		d.rep.Events = d.bp.Snapshot().EventCount
		d.rep.MaxWindowAirtime = maxWindow(d.txs, s.cfg.Region.Window)
		s.rep.SameState = s.rep.SameState && h == s.devs[0].rep.StateHash
		s.rep.Devices = append(s.rep.Devices, d.rep)
	}
	r := s.rep
	return &r, nil
}

// maxWindow is the largest sum of airtime of transmissions that end
// within any window of length w (each window ending at a transmission's
// end, where the sum peaks).
func maxWindow(txs []txRec, w time.Duration) time.Duration {
	if w <= 0 {
		return 0
	}
	var best, sum time.Duration
	j := 0
	for i, t := range txs {
		end := t.start.Add(t.air)
		sum += t.air
		for ; j <= i && !txs[j].start.Add(txs[j].air).After(end.Add(-w)); j++ {
			sum -= txs[j].air
		}
		best = max(best, sum)
	}
	return best
}
