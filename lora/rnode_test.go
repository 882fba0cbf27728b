package lora_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/rnodesim"
	"github.com/creack/pty"
)

var testConfig = lora.RNodeConfig{
	Frequency:        869_525_000,
	Bandwidth:        125_000,
	TXPower:          14,
	SpreadingFactor:  9,
	CodingRate:       5,
	LongAirtimeLimit: 10,
	ReplyTimeout:     20 * time.Second,
}

// rig is an emulated RNode on the master side of a real pty; the host
// opens the slave side through the serial package, as it would a USB
// device.
type rig struct {
	dev    *rnodesim.Device
	master *os.File
	path   string
}

func newRig(t *testing.T, opts rnodesim.Options) *rig {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	// pty.Open leaves the master in blocking mode, where Close waits for
	// a pending Read. A non-blocking duplicate goes through the poller,
	// so closing it unplugs the device at once.
	fd, err := syscall.Dup(int(ptmx.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	ptmx.Close()
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	r := &rig{dev: rnodesim.New(master, opts), master: master, path: tty.Name()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.dev.Run()
	}()
	t.Cleanup(func() {
		master.Close()
		tty.Close()
		<-done
	})
	return r
}

func (r *rig) open(t *testing.T, cfg lora.RNodeConfig) (*lora.RNode, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l, err := lora.OpenRNode(ctx, r.path, cfg)
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

func rnodePair(t *testing.T, opts rnodesim.Options) (a, b *lora.RNode, ra, rb *rig) {
	t.Helper()
	ra, rb = newRig(t, opts), newRig(t, opts)
	rnodesim.Pair(ra.dev, rb.dev)
	a, err := ra.open(t, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	b, err = rb.open(t, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, ra, rb
}

func TestRNode(t *testing.T) {
	testLink(t, func(t *testing.T) (lora.Link, lora.Link) {
		a, b, _, _ := rnodePair(t, rnodesim.Options{})
		return a, b
	})
}

func TestRNodeSignalAndStats(t *testing.T) {
	a, b, ra, _ := rnodePair(t, rnodesim.Options{RSSI: -97, SNRRaw: -6, Channel: true})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if !ra.dev.RadioOn() {
		t.Fatal("radio off after bring-up")
	}
	if err := a.Send(ctx, make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	f, err := b.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !f.HasSignal || f.RSSI != -97 || f.SNR != -1.5 || len(f.Payload) != 300 {
		t.Errorf("frame: signal %v rssi %d snr %v len %d", f.HasSignal, f.RSSI, f.SNR, len(f.Payload))
	}
	p := testConfig.Params()
	if got := a.Params(); got.SpreadingFactor != 9 || got.Bandwidth != 125000 || got.CodingRate != 5 {
		t.Errorf("params %+v", got)
	}
	// Channel and PHY reports follow the transmission asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for !a.Info().HasChannel || !a.Info().HasPHY {
		if time.Now().After(deadline) {
			t.Fatal("no channel stats reported")
		}
		time.Sleep(5 * time.Millisecond)
	}
	info := a.Info()
	if info.Major != 1 || info.Minor != 86 || info.Platform != 0x80 || info.TXPackets != 1 {
		t.Errorf("info %+v", info)
	}
	if c := info.Channel; c.AirtimeShort != 1.5 || c.AirtimeLong != 0.25 || c.ChannelLoadShort != 2 || c.NoiseFloor != -120 || c.Interference {
		t.Errorf("channel %+v", c)
	}
	if info.PHY.PreambleSymbols != 18 || info.PHY.SymbolTimeUS != 4096 {
		t.Errorf("phy %+v", info.PHY)
	}
	p.Preamble = 18
	if st := a.Stats(); st.Airtime != p.RNodeAirtime(300) && st.Airtime != testConfig.Params().RNodeAirtime(300) {
		t.Errorf("airtime %v", st.Airtime)
	}
	if err := a.SetRadio(ctx, false); err != nil || ra.dev.RadioOn() {
		t.Errorf("radio off: %v, device on %v", err, ra.dev.RadioOn())
	}
}

func TestRNodeBringUpErrors(t *testing.T) {
	short := testConfig
	short.ReplyTimeout = 300 * time.Millisecond
	tests := []struct {
		name  string
		opts  rnodesim.Options
		cfg   lora.RNodeConfig
		check func(error) bool
	}{
		{"old firmware", rnodesim.Options{Major: 1, Minor: 50}, testConfig, func(err error) bool {
			fe, ok := errors.AsType[*lora.FirmwareError](err)
			return ok && fe.Minor == 50 && errors.Is(err, lora.ErrOldFirmware)
		}},
		{"not an rnode", rnodesim.Options{NoDetect: true}, short, func(err error) bool { return errors.Is(err, lora.ErrNotRNode) }},
		{"spreading factor differs", rnodesim.Options{Misreport: map[byte][]byte{lora.RNodeSF: {8}}}, testConfig, func(err error) bool {
			ce, ok := errors.AsType[*lora.ConfigError](err)
			return ok && ce.Setting == "spreading factor" && ce.Want == 9 && ce.Got == 8
		}},
		{"frequency differs", rnodesim.Options{Misreport: map[byte][]byte{lora.RNodeFrequency: binary.BigEndian.AppendUint32(nil, 868_100_000)}}, testConfig, func(err error) bool {
			ce, ok := errors.AsType[*lora.ConfigError](err)
			return ok && ce.Setting == "frequency" && ce.Got == 868_100_000
		}},
		{"airtime lock differs", rnodesim.Options{Misreport: map[byte][]byte{lora.RNodeLTALock: {0x01, 0xF4}}}, testConfig, func(err error) bool {
			ce, ok := errors.AsType[*lora.ConfigError](err)
			return ok && ce.Setting == "long-term airtime limit" && ce.Got == 5
		}},
		{"setting never reported", rnodesim.Options{Misreport: map[byte][]byte{lora.RNodeCR: {}}}, short, func(err error) bool {
			ce, ok := errors.AsType[*lora.ConfigError](err)
			return ok && ce.Setting == "coding rate" && ce.Missing
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.opts)
			_, err := r.open(t, tt.cfg)
			if err == nil || !tt.check(err) {
				t.Fatalf("err = %v", err)
			}
			t.Log(err)
		})
	}
}

func TestRNodeUnplugged(t *testing.T) {
	a, b, _, rb := rnodePair(t, rnodesim.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := a.Send(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := b.Recv(ctx)
		errc <- err
	}()
	rb.master.Close() // the cable is pulled while b waits for a frame
	if err := <-errc; !errors.Is(err, lora.ErrDisconnected) {
		t.Fatalf("recv on an unplugged device: %v, want ErrDisconnected", err)
	}
	if err := b.Send(ctx, []byte("after")); !errors.Is(err, lora.ErrDisconnected) {
		t.Errorf("send on an unplugged device: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Logf("close: %v", err)
	}
}

func TestRNodeGarbageAndDeviceErrors(t *testing.T) {
	a, b, _, rb := rnodePair(t, rnodesim.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	garbage := []byte{0x00, 0xDB, 0x41, 0xC0, 0xDB, 0x00, 0xC0, 0x25, 0x01, 0xC0, 'n', 'o', 'i', 's', 'e'}
	if err := rb.dev.Write(garbage); err != nil {
		t.Fatal(err)
	}
	if err := rb.dev.SendError(lora.RNodeErrQueueFull); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	f, err := b.Recv(ctx)
	if err != nil || string(f.Payload) != "still here" {
		t.Fatalf("after garbage: %q %v", f.Payload, err)
	}
	info := b.Info()
	if info.Errors != 1 || info.LastError == nil {
		t.Errorf("info after a queue-full error: %+v", info)
	}
	if st := b.Stats(); st.FramesDropped < 2 {
		t.Errorf("dropped %d frames of garbage, want at least 2", st.FramesDropped)
	}
	if err := rb.dev.SendError(lora.RNodeErrTXFailed); err != nil {
		t.Fatal(err)
	}
	_, err = b.Recv(ctx)
	if de, ok := errors.AsType[*lora.DeviceError](err); !ok || de.Code != lora.RNodeErrTXFailed {
		t.Fatalf("recv after a TX failure: %v", err)
	}
}
