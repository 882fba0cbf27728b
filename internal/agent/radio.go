package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// RadioOptions configures the agent's LoRa link: a radio on a serial
// port that syncs with the devices in range (docs/FORMAT.md, "Radio
// sync"), beside the peer folders.
type RadioOptions struct {
	Device string // serial port, e.g. /dev/ttyUSB0
	Driver string // "rnode" (default) or "kiss" (a generic KISS TNC)
	Baud   int    // default 115200
	// KISSPort is the KISS port data frames use (kiss driver).
	KISSPort int
	// The modulation. Frequency and TXPower are set on an RNode; a KISS
	// TNC is configured by its own tools, and these only size airtime.
	Frequency       uint32 // Hz (default 868,100,000)
	Bandwidth       uint32 // Hz (default 125,000)
	SpreadingFactor int    // default 9
	CodingRate      int    // 5..8 for 4/5..4/8 (default 5)
	TXPower         int    // dBm (default 14)
	// Region is the duty-cycle regime never exceeded: EU868, EU869,
	// EU863, US915 or unlimited; empty means the EU rule of Frequency.
	Region string
	// HelloEvery is how often the device says hello (default 10 min):
	// shorter finds new devices and changes sooner, at more airtime. A
	// hello follows sooner after a change, frontiers go to a peer at most
	// this often, and a fragment not acknowledged is sent again after
	// three of it (each at most the default).
	HelloEvery time.Duration
}

// syncOptions are the protocol settings for o.
func (o *RadioOptions) syncOptions(p lora.Params, r lora.Region, log *slog.Logger) radiosync.Options {
	so := radiosync.Options{Params: p, Region: r, Logger: log}
	if o.HelloEvery > 0 {
		so.HelloEvery = o.HelloEvery
		so.HelloSoon = min(30*time.Second, o.HelloEvery/4)
		so.FrontierEvery = min(10*time.Minute, o.HelloEvery)
		so.AckTimeout = min(5*time.Minute, 3*o.HelloEvery)
	}
	return so
}

// resolve fills defaults and returns the modulation and the region.
func (o *RadioOptions) resolve() (lora.Params, lora.Region, error) {
	if o.Device == "" {
		return lora.Params{}, lora.Region{}, errors.New("agent: radio: no serial device")
	}
	switch o.Driver {
	case "":
		o.Driver = "rnode"
	case "rnode", "kiss":
	default:
		return lora.Params{}, lora.Region{}, fmt.Errorf("agent: radio: driver must be rnode or kiss, not %q", o.Driver)
	}
	if o.Baud <= 0 {
		o.Baud = 115200
	}
	if o.Frequency == 0 {
		o.Frequency = 868_100_000
	}
	if o.Bandwidth == 0 {
		o.Bandwidth = 125_000
	}
	if o.SpreadingFactor == 0 {
		o.SpreadingFactor = 9
	}
	if o.CodingRate == 0 {
		o.CodingRate = 5
	}
	if o.TXPower == 0 {
		o.TXPower = 14
	}
	p := lora.Params{SpreadingFactor: o.SpreadingFactor, Bandwidth: int(o.Bandwidth), CodingRate: o.CodingRate}
	var r lora.Region
	switch strings.ToUpper(o.Region) {
	case "":
		var ok bool
		if r, ok = lora.EURegion(o.Frequency); !ok {
			return p, r, fmt.Errorf("agent: radio: %d Hz is outside the EU 863-870 MHz band; say which rules apply with the region (EU868, EU869, EU863, US915 or unlimited)", o.Frequency)
		}
	case "EU868":
		r = lora.EU868
	case "EU869":
		r = lora.EU869
	case "EU863":
		r = lora.EU863
	case "US915":
		r = lora.US915
	case "UNLIMITED":
		r = lora.Unlimited
	default:
		return p, r, fmt.Errorf("agent: radio: unknown region %q (EU868, EU869, EU863, US915 or unlimited)", o.Region)
	}
	cfg := lora.RNodeConfig{Frequency: o.Frequency, Bandwidth: o.Bandwidth, TXPower: o.TXPower, SpreadingFactor: o.SpreadingFactor, CodingRate: o.CodingRate}
	if err := cfg.Validate(); err != nil {
		return p, r, fmt.Errorf("agent: radio: %w", err)
	}
	return p, r, nil
}

// openLink opens the serial port and brings the radio up.
func (a *Agent) openLink(ctx context.Context, o *RadioOptions, p lora.Params) (lora.Link, error) {
	if o.Driver == "rnode" {
		return lora.OpenRNode(ctx, o.Device, lora.RNodeConfig{Frequency: o.Frequency, Bandwidth: o.Bandwidth,
			TXPower: o.TXPower, SpreadingFactor: o.SpreadingFactor, CodingRate: o.CodingRate})
	}
	rw, err := lora.OpenSerial(o.Device, o.Baud)
	if err != nil {
		return nil, err
	}
	return lora.NewTNC(rw, lora.TNCOptions{Port: o.KISSPort, Params: &p}), nil
}

// runRadio keeps the LoRa link up until ctx ends: it opens the radio,
// runs the sync protocol over it, and when the link fails (the radio
// unplugged, a firmware error) says so in the status and tries again,
// waiting longer each time up to a minute.
func (a *Agent) runRadio(ctx context.Context, ready <-chan struct{}) {
	o := a.opts.Radio
	params, region, err := o.resolve()
	if err != nil {
		a.radioState("down: "+err.Error(), nil)
		return
	}
	select {
	case <-ready: // the first pass opened the store
	case <-ctx.Done():
		return
	}
	backoff := time.Second
	for ctx.Err() == nil {
		a.radioState("connecting", nil)
		link, err := a.openLink(ctx, o, params)
		if err == nil {
			var s *radiosync.Syncer
			s, err = radiosync.NewSyncer(link, radioStore{a}, o.syncOptions(params, region, a.log.With("part", "radio")))
			if err == nil {
				a.log.Info("radio up", "device", o.Device, "driver", o.Driver, "region", region.Name)
				backoff = time.Second
				a.radio.Store(s)
				err = a.runSyncer(ctx, s)
				a.radio.Store(nil)
			}
			link.Close()
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("radio down", "device", o.Device, "err", err)
		a.radioState("down: "+err.Error(), err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// runSyncer runs s and publishes its status at once and then every few
// seconds, from its own goroutine: a status call that has to wait never
// holds up the link.
func (a *Agent) runSyncer(ctx context.Context, s *radiosync.Syncer) error {
	ctx, cancel := context.WithCancel(ctx)
	refreshed := make(chan struct{})
	defer func() {
		cancel()
		<-refreshed // so that a late "up" never follows the caller's "down"
	}()
	go func() {
		defer close(refreshed)
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			a.radioState("", nil)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s.Run(ctx)
}

// radioState publishes the radio's status to subscribers (not to
// status.json: it changes too often). link overrides the syncer's own
// link state when the syncer is not running; err goes to the recent
// errors.
func (a *Agent) radioState(link string, err error) {
	if err != nil {
		a.noteError("radio "+a.opts.Radio.Device, err)
	}
	r := a.radioStatus(link)
	a.radioLast.Store(r)
	prev := a.status.Load()
	if prev == nil {
		return
	}
	s := *prev
	s.Radio = r
	a.status.Store(&s)
	a.notify()
}

// radioStatus is the status of the LoRa link ("" link: the syncer's).
func (a *Agent) radioStatus(link string) *status.RadioStatus {
	o := a.opts.Radio
	if o == nil {
		return nil
	}
	r := &status.RadioStatus{Link: link, Device: o.Device, Driver: o.Driver}
	s := a.radio.Load()
	if s == nil {
		if r.Link == "" {
			r.Link = "down"
		}
		return r
	}
	st := s.Status()
	if r.Link == "" {
		r.Link = st.Link
	}
	r.Region = st.Region
	r.AirtimeUsed, r.AirtimeBudget = st.Used.Seconds(), st.Allowance.Seconds()
	r.Window = time.Hour
	r.FramesSent, r.FramesRecv, r.FramesLost = int64(st.LinkStats.FramesSent), int64(st.LinkStats.FramesReceived), int64(st.LinkStats.FramesLost)
	r.HasSignal, r.RSSI, r.SNR = st.HasSignal, float64(st.RSSI), st.SNR
	for c := range st.Queue.Frames {
		r.Queue += st.Queue.Frames[c]
	}
	r.QueueETA = st.Queue.Total
	r.EventsIn = int64(st.Counters.EventsApplied)
	for _, p := range st.Peers {
		r.Peers = append(r.Peers, status.RadioPeer{KeyID: p.KeyID, LastHeard: p.LastHeard, InSync: p.InSync, ToSend: p.ToSend})
	}
	return r
}

// radioStore is the backpack as the radio protocol sees it: reads from
// the warm store, and every received event through the same locked,
// verified ingest as the peer folders' bundles.
type radioStore struct{ a *Agent }

// with runs fn on the warm store holding storeMu, as a pass does: for
// writes, which take the backpack's lock.
func (r radioStore) with(fn func(*store.Backpack) error) error {
	r.a.storeMu.Lock()
	defer r.a.storeMu.Unlock()
	if r.a.b == nil {
		return errors.New("agent: the backpack is not open")
	}
	return fn(r.a.b)
}

// read runs fn on the warm store without storeMu: reads need no lock,
// and the protocol reads while it holds its own (a pass must not wait on
// it, nor it on a pass).
func (r radioStore) read(fn func(*store.Backpack) error) error {
	b := r.a.warm.Load()
	if b == nil {
		return errors.New("agent: the backpack is not open")
	}
	return fn(b)
}

func (r radioStore) UID() string { return r.a.uid }

func (r radioStore) Actor() (s string) {
	r.read(func(b *store.Backpack) error { s = b.Actor(); return nil })
	return s
}

func (r radioStore) SigningKey() (k bplog.PrivateKey, err error) {
	err = r.read(func(b *store.Backpack) (err error) { k, err = b.SigningKey(); return err })
	return k, err
}

func (r radioStore) Registry() (reg *bplog.Registry) {
	r.read(func(b *store.Backpack) error { reg = b.Registry(); return nil })
	return reg
}

func (r radioStore) Frontier() (f bplog.Frontier) {
	r.read(func(b *store.Backpack) error { f = b.Frontier(); return nil })
	return f
}

func (r radioStore) Delta(ctx context.Context, since bplog.Frontier) (lines [][]byte, err error) {
	err = r.read(func(b *store.Backpack) (err error) { lines, err = b.Delta(ctx, since); return err })
	return lines, err
}

// Ingest takes the lock for the events the radio brought (waiting while
// a command holds it), then asks for a pass so that the peer folders
// get them too.
func (r radioStore) Ingest(ctx context.Context, lines [][]byte, source string) (res *store.IngestResult, err error) {
	err = r.with(func(b *store.Backpack) error {
		if _, err := b.ReacquireWait(ctx, false, 30*time.Second); err != nil {
			return err
		}
		res, err = b.Ingest(ctx, lines, source)
		if rerr := b.Release(); err == nil {
			err = rerr
		}
		return err
	})
	if err == nil && len(res.Applied) > 0 {
		r.a.SyncNow()
	}
	return res, err
}
