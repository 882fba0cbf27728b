package lora

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// Minimum RNode firmware version, as Reticulum requires.
const (
	RNodeMinMajor = 1
	RNodeMinMinor = 52
)

// RNodeConfig is the radio configuration NewRNode and Configure apply.
type RNodeConfig struct {
	Frequency       uint32 // Hz
	Bandwidth       uint32 // Hz
	TXPower         int    // dBm
	SpreadingFactor int    // 7..12
	CodingRate      int    // 5..8 for 4/5..4/8
	// ShortAirtimeLimit and LongAirtimeLimit, in percent, make the
	// firmware itself refuse to exceed an airtime share over about 15 s
	// and 60 min; 0 leaves the device's setting alone.
	ShortAirtimeLimit float64
	LongAirtimeLimit  float64
	// ReplyTimeout bounds each wait for the device (default 5 s).
	ReplyTimeout time.Duration
}

// Validate reports settings the firmware would refuse.
func (c RNodeConfig) Validate() error {
	switch {
	case c.Frequency < 137_000_000 || c.Frequency > 3_000_000_000:
		return fmt.Errorf("%w: frequency %d Hz", ErrParams, c.Frequency)
	case c.Bandwidth < 7800 || c.Bandwidth > 1_625_000:
		return fmt.Errorf("%w: bandwidth %d Hz", ErrParams, c.Bandwidth)
	case c.TXPower < -9 || c.TXPower > 37:
		return fmt.Errorf("%w: tx power %d dBm", ErrParams, c.TXPower)
	case c.SpreadingFactor < 5 || c.SpreadingFactor > 12:
		return fmt.Errorf("%w: spreading factor %d", ErrParams, c.SpreadingFactor)
	case c.CodingRate < 5 || c.CodingRate > 8:
		return fmt.Errorf("%w: coding rate 4/%d", ErrParams, c.CodingRate)
	case c.ShortAirtimeLimit < 0 || c.ShortAirtimeLimit > 100, c.LongAirtimeLimit < 0 || c.LongAirtimeLimit > 100:
		return fmt.Errorf("%w: airtime limit outside 0..100 %%", ErrParams)
	}
	return nil
}

// Params returns the modulation parameters of the configuration.
func (c RNodeConfig) Params() Params {
	return Params{SpreadingFactor: c.SpreadingFactor, Bandwidth: int(c.Bandwidth), CodingRate: c.CodingRate}
}

var (
	// ErrNotRNode is returned when the device does not answer the detect
	// request as an RNode does.
	ErrNotRNode = errors.New("lora: no rnode answered the detect request")
	// ErrOldFirmware matches a *FirmwareError.
	ErrOldFirmware = errors.New("lora: rnode firmware too old")
)

// FirmwareError reports firmware older than RNodeMinMajor.RNodeMinMinor.
type FirmwareError struct {
	Major, Minor int
}

func (e *FirmwareError) Error() string {
	return fmt.Sprintf("lora: rnode firmware %d.%02d is too old (need %d.%02d or newer); update it with rnodeconf",
		e.Major, e.Minor, RNodeMinMajor, RNodeMinMinor)
}

func (e *FirmwareError) Unwrap() error { return ErrOldFirmware }

// ConfigError reports a setting the device reads back differently from
// what was sent, or does not read back at all (Missing).
type ConfigError struct {
	Setting   string // "frequency", "bandwidth", "tx power", "spreading factor", "coding rate", "radio state", ...
	Want, Got float64
	Missing   bool
}

func (e *ConfigError) Error() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	if e.Missing {
		return fmt.Sprintf("lora: rnode did not report its %s (sent %s)", e.Setting, f(e.Want))
	}
	return fmt.Sprintf("lora: rnode reports %s %s, want %s", e.Setting, f(e.Got), f(e.Want))
}

// setting is one configurable value and how the device reports it.
type setting struct {
	cmd  byte
	name string
}

var settings = []setting{
	{RNodeFrequency, "frequency"},
	{RNodeBandwidth, "bandwidth"},
	{RNodeTXPower, "tx power"},
	{RNodeSF, "spreading factor"},
	{RNodeCR, "coding rate"},
	{RNodeSTALock, "short-term airtime limit"},
	{RNodeLTALock, "long-term airtime limit"},
	{RNodeRadioState, "radio state"},
}

// RNodeInfo is what the device reported about itself and its channel.
type RNodeInfo struct {
	Major, Minor  int
	Platform, MCU byte
	// RXPackets and TXPackets are the firmware's own counters.
	RXPackets, TXPackets uint32
	Channel              ChannelStats
	HasChannel           bool // Channel was reported (ESP32 and nRF52 boards)
	PHY                  PHYStats
	HasPHY               bool
	Errors               uint64 // error frames received
	LastError            error  // the last *DeviceError, or nil
}

// RNode is a Link to an RNode over its host protocol. The MTU is
// RNodeMTU: the firmware splits a payload over 254 bytes into two LoRa
// packets. Each received frame carries the RSSI and SNR the firmware
// reports just before it.
type RNode struct {
	p       *port
	in      chan Frame
	timeout time.Duration

	mu       sync.Mutex       // mu guards the fields below
	changed  chan struct{}    // closed and replaced on every report
	values   map[byte]float64 // last reported value per setting command
	detected int              // 0 unknown, 1 yes, -1 wrong answer
	verKnown bool
	info     RNodeInfo
	rssi     *int
	snr      *float64
	st       Stats
	online   bool
}

var _ Link = (*RNode)(nil)

// OpenRNode opens the serial port at path (115200 baud) and brings up the
// RNode behind it, as NewRNode does.
func OpenRNode(ctx context.Context, path string, cfg RNodeConfig) (*RNode, error) {
	rw, err := OpenSerial(path, 115200)
	if err != nil {
		return nil, err
	}
	return NewRNode(ctx, rw, cfg)
}

// NewRNode brings up the RNode on rw, which it owns: it detects the
// device, checks the firmware version, applies cfg, turns the radio on and
// checks every value the device reports back. On error it closes rw; the
// error is ErrNotRNode, a *FirmwareError, a *ConfigError, a *DeviceError,
// or one matching ErrDisconnected or ctx's error.
func NewRNode(ctx context.Context, rw io.ReadWriteCloser, cfg RNodeConfig) (*RNode, error) {
	if err := cfg.Validate(); err != nil {
		rw.Close()
		return nil, err
	}
	r := &RNode{
		in:      make(chan Frame, recvBuffer),
		timeout: cfg.ReplyTimeout,
		changed: make(chan struct{}),
		values:  make(map[byte]float64),
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	r.p = startPort(rw, RNodeMTU+1, r.handle, func(error) {
		r.mu.Lock()
		r.st.FramesDropped++
		r.mu.Unlock()
	})
	if err := r.bringUp(ctx, cfg); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *RNode) bringUp(ctx context.Context, cfg RNodeConfig) error {
	var b []byte
	b = AppendFrame(b, RNodeDetect, []byte{RNodeDetectReq})
	b = AppendFrame(b, RNodeFWVersion, []byte{0})
	b = AppendFrame(b, RNodePlatform, []byte{0})
	b = AppendFrame(b, RNodeMCU, []byte{0})
	if err := r.p.writeRaw(b); err != nil {
		return err
	}
	err := r.wait(ctx, func() bool { return r.detected != 0 && r.verKnown })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) || r.detectedState() < 0 {
		return fmt.Errorf("%w (waited %v)", ErrNotRNode, r.timeout)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	maj, mnr := r.info.Major, r.info.Minor
	r.mu.Unlock()
	if maj < RNodeMinMajor || maj == RNodeMinMajor && mnr < RNodeMinMinor {
		return &FirmwareError{Major: maj, Minor: mnr}
	}
	if err := r.Configure(ctx, cfg); err != nil {
		return err
	}
	return r.SetRadio(ctx, true)
}

func (r *RNode) detectedState() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.detected
}

// wait blocks until cond (called with mu held) holds, the reply timeout
// passes, ctx is done or the port fails.
func (r *RNode) wait(ctx context.Context, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.p.done:
			return r.p.stopErr()
		}
	}
}

// Configure applies cfg to the device and checks what it reports back.
// The radio state is left as it is.
func (r *RNode) Configure(ctx context.Context, cfg RNodeConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	want := map[byte]float64{
		RNodeFrequency: float64(cfg.Frequency),
		RNodeBandwidth: float64(cfg.Bandwidth),
		RNodeTXPower:   float64(cfg.TXPower),
		RNodeSF:        float64(cfg.SpreadingFactor),
		RNodeCR:        float64(cfg.CodingRate),
	}
	var b []byte
	b = AppendFrame(b, RNodeFrequency, binary.BigEndian.AppendUint32(nil, cfg.Frequency))
	b = AppendFrame(b, RNodeBandwidth, binary.BigEndian.AppendUint32(nil, cfg.Bandwidth))
	b = AppendFrame(b, RNodeTXPower, []byte{byte(int8(cfg.TXPower))})
	b = AppendFrame(b, RNodeSF, []byte{byte(cfg.SpreadingFactor)})
	b = AppendFrame(b, RNodeCR, []byte{byte(cfg.CodingRate)})
	for _, l := range []struct {
		cmd byte
		pct float64
	}{{RNodeSTALock, cfg.ShortAirtimeLimit}, {RNodeLTALock, cfg.LongAirtimeLimit}} {
		if l.pct > 0 {
			v := uint16(l.pct*100 + 0.5)
			want[l.cmd] = float64(v) / 100
			b = AppendFrame(b, l.cmd, binary.BigEndian.AppendUint16(nil, v))
		}
	}
	return r.apply(ctx, b, want)
}

// SetRadio turns the radio on or off and checks the state the device
// reports.
func (r *RNode) SetRadio(ctx context.Context, on bool) error {
	st := byte(RNodeRadioOff)
	if on {
		st = RNodeRadioOn
	}
	if err := r.apply(ctx, AppendFrame(nil, RNodeRadioState, []byte{st}), map[byte]float64{RNodeRadioState: float64(st)}); err != nil {
		return err
	}
	r.mu.Lock()
	r.online = on
	r.mu.Unlock()
	return nil
}

// apply forgets the reported values of want's settings, writes b and
// waits until the device has reported each of them, then compares.
func (r *RNode) apply(ctx context.Context, b []byte, want map[byte]float64) error {
	r.mu.Lock()
	for cmd := range want {
		delete(r.values, cmd)
	}
	r.mu.Unlock()
	if err := r.p.writeRaw(b); err != nil {
		return err
	}
	err := r.wait(ctx, func() bool {
		for cmd := range want {
			if _, ok := r.values[cmd]; !ok {
				return false
			}
		}
		return true
	})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range settings {
		w, ok := want[s.cmd]
		if !ok {
			continue
		}
		got, ok := r.values[s.cmd]
		if !ok {
			return &ConfigError{Setting: s.name, Want: w, Missing: true}
		}
		if got != w {
			return &ConfigError{Setting: s.name, Want: w, Got: got}
		}
	}
	return nil
}

// handle runs on the reader goroutine.
func (r *RNode) handle(cmd byte, data []byte) error {
	if cmd == RNodeData {
		return r.handleData(data)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.reportLocked(cmd, data)
	close(r.changed)
	r.changed = make(chan struct{})
	if err != nil {
		if _, ok := errors.AsType[*DeviceError](err); ok {
			return err
		}
		r.st.FramesDropped++ // a malformed report
	}
	return nil
}

func (r *RNode) handleData(data []byte) error {
	f := Frame{Payload: append([]byte(nil), data...)}
	r.mu.Lock()
	if r.rssi != nil && r.snr != nil {
		f.HasSignal, f.RSSI, f.SNR = true, *r.rssi, *r.snr
	}
	r.rssi, r.snr = nil, nil
	r.mu.Unlock()
	select {
	case r.in <- f: // counted when Recv hands it out
	default:
		r.mu.Lock()
		r.st.FramesDropped++
		r.mu.Unlock()
	}
	return nil
}

// reportLocked records one device report. A fatal *DeviceError stops the
// link; any other error means a malformed report.
func (r *RNode) reportLocked(cmd byte, data []byte) error {
	switch cmd {
	case RNodeFrequency, RNodeBandwidth:
		v, err := decodeU32(cmd, data)
		if err != nil {
			return err
		}
		r.values[cmd] = float64(v)
	case RNodeTXPower:
		v, err := decodeByte(cmd, data)
		if err != nil {
			return err
		}
		r.values[cmd] = float64(int8(v))
	case RNodeSF, RNodeCR, RNodeRadioState:
		v, err := decodeByte(cmd, data)
		if err != nil {
			return err
		}
		r.values[cmd] = float64(v)
	case RNodeSTALock, RNodeLTALock:
		v, err := decodeLock(cmd, data)
		if err != nil {
			return err
		}
		r.values[cmd] = v
	case RNodeDetect:
		v, err := decodeByte(cmd, data)
		if err != nil {
			return err
		}
		r.detected = -1
		if v == RNodeDetectResp {
			r.detected = 1
		}
	case RNodeFWVersion:
		maj, mnr, err := decodeVersion(data)
		if err != nil {
			return err
		}
		r.info.Major, r.info.Minor, r.verKnown = maj, mnr, true
	case RNodePlatform, RNodeMCU:
		v, err := decodeByte(cmd, data)
		if err != nil {
			return err
		}
		if cmd == RNodePlatform {
			r.info.Platform = v
		} else {
			r.info.MCU = v
		}
	case RNodeStatRX, RNodeStatTX:
		v, err := decodeU32(cmd, data)
		if err != nil {
			return err
		}
		if cmd == RNodeStatRX {
			r.info.RXPackets = v
		} else {
			r.info.TXPackets = v
		}
	case RNodeStatRSSI:
		v, err := decodeRSSI(data)
		if err != nil {
			return err
		}
		r.rssi = &v
	case RNodeStatSNR:
		v, err := decodeSNR(data)
		if err != nil {
			return err
		}
		r.snr = &v
	case RNodeStatChannel:
		v, err := decodeChannelStats(data)
		if err != nil {
			return err
		}
		r.info.Channel, r.info.HasChannel = v, true
	case RNodeStatPHY:
		v, err := decodePHYStats(data)
		if err != nil {
			return err
		}
		r.info.PHY, r.info.HasPHY = v, true
	case RNodeError:
		v, err := decodeByte(cmd, data)
		if err != nil {
			return err
		}
		de := &DeviceError{Code: v}
		r.info.Errors++
		r.info.LastError = de
		if de.Fatal() {
			return de
		}
	case RNodeReset:
		if len(data) > 0 && data[0] == 0xF8 && r.online {
			return fmt.Errorf("%w: rnode reset itself", ErrDisconnected)
		}
	}
	// Other reports (ready, battery, temperature, CSMA, random, ...) are
	// not needed by a link.
	return nil
}

// MTU implements Link.
func (r *RNode) MTU() int { return RNodeMTU }

// Send implements Link.
func (r *RNode) Send(ctx context.Context, b []byte) error {
	if len(b) > RNodeMTU {
		return ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.p.write(RNodeData, b); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.FramesSent++
	r.st.BytesSent += uint64(len(b))
	r.st.Airtime += r.paramsLocked().RNodeAirtime(len(b))
	return nil
}

func (r *RNode) paramsLocked() Params {
	p := Params{
		SpreadingFactor: int(r.values[RNodeSF]),
		Bandwidth:       int(r.values[RNodeBandwidth]),
		CodingRate:      int(r.values[RNodeCR]),
	}
	if r.info.HasPHY && r.info.PHY.PreambleSymbols > 0 {
		p.Preamble = r.info.PHY.PreambleSymbols
	}
	return p
}

// Params returns the modulation parameters the device reported.
func (r *RNode) Params() Params {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paramsLocked()
}

// Recv implements Link.
func (r *RNode) Recv(ctx context.Context) (Frame, error) {
	return recv(ctx, r.in, r.p, func(f Frame) {
		r.mu.Lock()
		r.st.FramesReceived++
		r.st.BytesReceived += uint64(len(f.Payload))
		r.mu.Unlock()
	})
}

// Stats implements Link.
func (r *RNode) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// Info returns what the device reported about itself and its channel.
func (r *RNode) Info() RNodeInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// Close implements Link. It tells the firmware the host is leaving.
func (r *RNode) Close() error {
	if r.p.failed() == nil {
		_ = r.p.write(RNodeLeave, []byte{RNodeLeaveByte}) // best effort
	}
	return r.p.close()
}
