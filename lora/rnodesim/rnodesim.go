// Package rnodesim emulates the host side of RNode firmware for tests: it
// sits on the device end of a byte stream (a pty's master, a pipe),
// answers the detect, version and configuration commands, echoes the
// configured values back, and passes data frames to a peer device as if
// over the air, preceded by RSSI and SNR reports.
package rnodesim

import (
	"encoding/binary"
	"io"
	"sync"

	"github.com/backpack-field/backpack/lora"
)

// Options shapes the emulated firmware. The zero value is firmware 1.86
// on an ESP32 that reports what it is told.
type Options struct {
	Major, Minor byte // firmware version; 0.0 means 1.86
	// Misreport replaces the reply to a configuration command (e.g.
	// lora.RNodeSF) with these bytes.
	Misreport map[byte][]byte
	// NoDetect makes the device answer the detect request wrongly.
	NoDetect bool
	// RSSI (dBm) and SNR (quarter dB) reported for received frames.
	RSSI    int
	SNRRaw  int8
	Channel bool // report channel and PHY stats after each transmission
	// OnTransmit, when set, sees every data frame the host sends before
	// it goes on the air (a test can pull a cable at a chosen frame). It
	// runs on the device's goroutine.
	OnTransmit func(data []byte)
}

// Device is one emulated RNode.
type Device struct {
	rw   io.ReadWriter
	opts Options

	wmu sync.Mutex // wmu serialises writes to rw

	mu    sync.Mutex // mu guards the fields below
	peer  *Device
	on    bool
	sf    byte
	bw    uint32
	tx    uint32
	rx    uint32
	recvd [][]byte
}

// New returns a device speaking on rw.
func New(rw io.ReadWriter, opts Options) *Device {
	if opts.Major == 0 && opts.Minor == 0 {
		opts.Major, opts.Minor = 1, 86
	}
	return &Device{rw: rw, opts: opts}
}

// Pair makes a and b hear each other's transmissions.
func Pair(a, b *Device) {
	a.mu.Lock()
	a.peer = b
	a.mu.Unlock()
	b.mu.Lock()
	b.peer = a
	b.mu.Unlock()
}

// Run answers the host until the stream fails, and returns that error.
func (d *Device) Run() error {
	dec := lora.NewDecoder(d.rw, lora.RNodeMTU+1)
	for {
		cmd, data, err := dec.Next()
		if _, ok := err.(*lora.FrameError); ok {
			continue
		}
		if err != nil {
			return err
		}
		if err := d.command(cmd, data); err != nil {
			return err
		}
	}
}

// Write sends raw bytes to the host (garbage, say).
func (d *Device) Write(b []byte) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.rw.Write(b)
	return err
}

func (d *Device) reply(cmd byte, data []byte) error {
	if m, ok := d.opts.Misreport[cmd]; ok {
		data = m
	}
	return d.Write(lora.AppendFrame(nil, cmd, data))
}

// SendError sends an error frame to the host.
func (d *Device) SendError(code byte) error {
	return d.Write(lora.AppendFrame(nil, lora.RNodeError, []byte{code}))
}

func (d *Device) command(cmd byte, data []byte) error {
	switch cmd {
	case lora.RNodeDetect:
		resp := byte(lora.RNodeDetectResp)
		if d.opts.NoDetect {
			resp = 0x00
		}
		return d.reply(cmd, []byte{resp})
	case lora.RNodeFWVersion:
		return d.reply(cmd, []byte{d.opts.Major, d.opts.Minor})
	case lora.RNodePlatform:
		return d.reply(cmd, []byte{0x80})
	case lora.RNodeMCU:
		return d.reply(cmd, []byte{0x81})
	case lora.RNodeFrequency, lora.RNodeBandwidth, lora.RNodeTXPower, lora.RNodeSF, lora.RNodeCR,
		lora.RNodeSTALock, lora.RNodeLTALock:
		d.mu.Lock()
		switch {
		case cmd == lora.RNodeSF && len(data) > 0:
			d.sf = data[0]
		case cmd == lora.RNodeBandwidth && len(data) >= 4:
			d.bw = binary.BigEndian.Uint32(data)
		}
		d.mu.Unlock()
		return d.reply(cmd, data)
	case lora.RNodeRadioState:
		if len(data) > 0 && data[0] != lora.RNodeRadioAsk {
			d.mu.Lock()
			d.on = data[0] == lora.RNodeRadioOn
			d.mu.Unlock()
		}
		d.mu.Lock()
		st := byte(0)
		if d.on {
			st = 1
		}
		d.mu.Unlock()
		return d.reply(cmd, []byte{st})
	case lora.RNodeData:
		return d.transmit(data)
	}
	return nil
}

func (d *Device) transmit(data []byte) error {
	if d.opts.OnTransmit != nil {
		d.opts.OnTransmit(data)
	}
	d.mu.Lock()
	on, peer := d.on, d.peer
	d.tx++
	tx := d.tx
	d.mu.Unlock()
	if on && peer != nil {
		peer.receive(append([]byte(nil), data...))
	}
	if !d.opts.Channel {
		return nil
	}
	var b []byte
	b = lora.AppendFrame(b, lora.RNodeStatTX, binary.BigEndian.AppendUint32(nil, tx))
	// 1.5 % short-term airtime, 0.25 % long-term, loads a little above.
	ch := []byte{0, 150, 0, 25, 0, 200, 0, 30, byte(-110 + lora.RNodeRSSIOffset), byte(-120 + lora.RNodeRSSIOffset), 0xFF}
	b = lora.AppendFrame(b, lora.RNodeStatChannel, ch)
	phy := make([]byte, 0, 12)
	for _, v := range []uint16{4096, 244, 18, 74, 24, 48} { // SF9/125 kHz-ish
		phy = binary.BigEndian.AppendUint16(phy, v)
	}
	b = lora.AppendFrame(b, lora.RNodeStatPHY, phy)
	return d.Write(b)
}

// receive delivers a frame heard on the air to the host, if the radio is on.
func (d *Device) receive(data []byte) {
	d.mu.Lock()
	on := d.on
	if on {
		d.rx++
		d.recvd = append(d.recvd, data)
	}
	d.mu.Unlock()
	if !on {
		return
	}
	var b []byte
	b = lora.AppendFrame(b, lora.RNodeStatRSSI, []byte{byte(d.opts.RSSI + lora.RNodeRSSIOffset)})
	b = lora.AppendFrame(b, lora.RNodeStatSNR, []byte{byte(d.opts.SNRRaw)})
	b = lora.AppendFrame(b, lora.RNodeData, data)
	_ = d.Write(b) // a host that went away loses the frame, as on a real device
}

// Received returns the frames the device heard while its radio was on.
func (d *Device) Received() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.recvd...)
}

// RadioOn reports the radio state.
func (d *Device) RadioOn() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.on
}
