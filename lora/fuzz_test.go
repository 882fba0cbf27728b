package lora

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func FuzzKISSDecode(f *testing.F) {
	f.Add([]byte{FEND, 0x00, 'h', 'i', FEND}, 16)
	f.Add([]byte{FEND, 0x00, FESC, TFEND, FESC, TFESC, FEND}, 16)
	f.Add([]byte{FEND, 0x00, FESC, 0x41, FEND, FEND, 0x10, 1, FEND}, 3)
	f.Add([]byte("garbage\xc0\x00ok\xc0\xc0"), 1)
	f.Add(AppendFrame(nil, RNodeFrequency, []byte{0x33, 0xC0, 0xDB, 0x00}), 8)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		max = max%2048 + 1
		if max <= 0 {
			max += 2048
		}
		d := NewDecoder(bytes.NewReader(in), max)
		var frames [][]byte
		for range len(in) + 2 {
			cmd, data, err := d.Next()
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				if _, ok := errors.AsType[*FrameError](err); !ok {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			if len(data)+1 > max {
				t.Fatalf("frame of %d bytes over limit %d", len(data)+1, max)
			}
			if cap(d.frame) > max+1 && cap(d.frame) > 4096 {
				t.Fatalf("decoder buffer grew to %d (limit %d)", cap(d.frame), max)
			}
			frames = append(frames, append([]byte{cmd}, data...))
		}
		// Every accepted frame round-trips through the encoder.
		var enc []byte
		for _, fr := range frames {
			enc = AppendFrame(enc, fr[0], fr[1:])
		}
		d2 := NewDecoder(bytes.NewReader(enc), max)
		for i, fr := range frames {
			cmd, data, err := d2.Next()
			if err != nil || cmd != fr[0] || !bytes.Equal(data, fr[1:]) {
				t.Fatalf("frame %d: re-decoded %x %x %v, want %x", i, cmd, data, err, fr)
			}
		}
		if _, _, err := d2.Next(); err != io.EOF {
			t.Fatalf("trailing: %v", err)
		}
		// And any input encodes then decodes to itself.
		if len(in) > 0 && len(in) < max {
			cmd, data, err := NewDecoder(bytes.NewReader(AppendFrame(nil, in[0], in[1:])), max).Next()
			if err != nil || cmd != in[0] || !bytes.Equal(data, in[1:]) {
				t.Fatalf("round trip of %x: %x %x %v", in, cmd, data, err)
			}
		}
	})
}

// FuzzRNodeReplies feeds arbitrary device output to an RNode's frame
// handler: it must never panic, and every reply the typed decoders accept
// must encode back to the bytes they read.
func FuzzRNodeReplies(f *testing.F) {
	f.Add(AppendFrame(nil, RNodeStatChannel, []byte{0, 150, 0, 25, 0, 200, 0, 30, 47, 37, 0xFF}))
	f.Add(AppendFrame(nil, RNodeStatPHY, []byte{16, 0, 0, 244, 0, 18, 0, 74, 0, 24, 0, 48}))
	f.Add(AppendFrame(AppendFrame(nil, RNodeStatRSSI, []byte{100}), RNodeStatSNR, []byte{0xF4}))
	f.Add(AppendFrame(nil, RNodeFWVersion, []byte{1, 52}))
	f.Add(AppendFrame(nil, RNodeError, []byte{RNodeErrQueueFull}))
	f.Add(AppendFrame(nil, RNodeFrequency, []byte{0x33, 0xC0, 0x00}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &RNode{in: make(chan Frame, 4), changed: make(chan struct{}), values: map[byte]float64{}, online: true}
		d := NewDecoder(bytes.NewReader(in), RNodeMTU+1)
		for {
			cmd, data, err := d.Next()
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				continue
			}
			if err := r.handle(cmd, data); err != nil {
				if _, ok := errors.AsType[*DeviceError](err); !ok && !errors.Is(err, ErrDisconnected) {
					t.Fatalf("handle returned %v", err)
				}
			}
			roundTrip(t, cmd, data)
		}
		r.Stats()
		r.Info()
	})
}

func roundTrip(t *testing.T, cmd byte, data []byte) {
	t.Helper()
	be16 := func(v float64) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v*100+0.5)) }
	var back []byte
	n := 0
	switch cmd {
	case RNodeFrequency, RNodeBandwidth, RNodeStatRX, RNodeStatTX:
		v, err := decodeU32(cmd, data)
		if err != nil {
			return
		}
		back, n = binary.BigEndian.AppendUint32(nil, v), 4
	case RNodeFWVersion:
		maj, mnr, err := decodeVersion(data)
		if err != nil {
			return
		}
		back, n = []byte{byte(maj), byte(mnr)}, 2
	case RNodeSTALock, RNodeLTALock:
		v, err := decodeLock(cmd, data)
		if err != nil {
			return
		}
		back, n = be16(v), 2
	case RNodeStatRSSI:
		v, err := decodeRSSI(data)
		if err != nil {
			return
		}
		back, n = []byte{byte(v + RNodeRSSIOffset)}, 1
	case RNodeStatSNR:
		v, err := decodeSNR(data)
		if err != nil {
			return
		}
		back, n = []byte{byte(int8(v * 4))}, 1
	case RNodeStatChannel:
		s, err := decodeChannelStats(data)
		if err != nil {
			return
		}
		back = append(back, be16(s.AirtimeShort)...)
		back = append(back, be16(s.AirtimeLong)...)
		back = append(back, be16(s.ChannelLoadShort)...)
		back = append(back, be16(s.ChannelLoadLong)...)
		back = append(back, byte(s.CurrentRSSI+RNodeRSSIOffset), byte(s.NoiseFloor+RNodeRSSIOffset), 0xFF)
		if s.Interference {
			back[10] = byte(s.InterferenceRSSI + RNodeRSSIOffset)
		}
		n = 11
	case RNodeStatPHY:
		s, err := decodePHYStats(data)
		if err != nil {
			return
		}
		for _, v := range []int{s.SymbolTimeUS, s.SymbolRate, s.PreambleSymbols, s.PreambleTimeMS, s.CSMASlotMS, s.DIFSMS} {
			back = binary.BigEndian.AppendUint16(back, uint16(v))
		}
		n = 12
	default:
		return
	}
	if !bytes.Equal(back, data[:n]) {
		t.Fatalf("reply 0x%02x: % x decodes and re-encodes to % x", cmd, data[:n], back)
	}
}
