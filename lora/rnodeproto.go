package lora

import (
	"encoding/binary"
	"fmt"
)

// RNode host protocol command bytes (RNode_Firmware Framing.h). RNode uses
// KISS framing, but these are its own commands, not KISS ones; the byte
// is not split into port and command.
const (
	RNodeData        = 0x00
	RNodeFrequency   = 0x01
	RNodeBandwidth   = 0x02
	RNodeTXPower     = 0x03
	RNodeSF          = 0x04
	RNodeCR          = 0x05
	RNodeRadioState  = 0x06
	RNodeRadioLock   = 0x07
	RNodeDetect      = 0x08
	RNodeImplicit    = 0x09
	RNodeLeave       = 0x0A
	RNodeSTALock     = 0x0B
	RNodeLTALock     = 0x0C
	RNodePromisc     = 0x0E
	RNodeReady       = 0x0F
	RNodeStatRX      = 0x21
	RNodeStatTX      = 0x22
	RNodeStatRSSI    = 0x23
	RNodeStatSNR     = 0x24
	RNodeStatChannel = 0x25
	RNodeStatPHY     = 0x26
	RNodeStatBattery = 0x27
	RNodeStatCSMA    = 0x28
	RNodeStatTemp    = 0x29
	RNodeRandom      = 0x40
	RNodePlatform    = 0x48
	RNodeMCU         = 0x49
	RNodeFWVersion   = 0x50
	RNodeReset       = 0x55
	RNodeError       = 0x90

	RNodeDetectReq  = 0x73 // host → device with RNodeDetect
	RNodeDetectResp = 0x46 // device → host
	RNodeLeaveByte  = 0xFF

	RNodeRadioOff = 0x00
	RNodeRadioOn  = 0x01
	RNodeRadioAsk = 0xFF

	// RNodeRSSIOffset is added to RSSI in dBm to fit it into a byte.
	RNodeRSSIOffset = 157
	// RNodeMTU is the largest payload the firmware takes from the host;
	// over 254 bytes it sends two LoRa packets.
	RNodeMTU = 508
)

// RNode firmware error codes (argument of RNodeError).
const (
	RNodeErrInitRadio    = 0x01
	RNodeErrTXFailed     = 0x02
	RNodeErrEEPROMLocked = 0x03
	RNodeErrQueueFull    = 0x04
	RNodeErrMemoryLow    = 0x05
	RNodeErrModemTimeout = 0x06
)

// DeviceError is an error frame from an RNode.
type DeviceError struct {
	Code byte
}

func (e *DeviceError) Error() string {
	return "lora: rnode reports " + e.describe()
}

func (e *DeviceError) describe() string {
	switch e.Code {
	case RNodeErrInitRadio:
		return "radio initialisation failed"
	case RNodeErrTXFailed:
		return "transmit failed"
	case RNodeErrEEPROMLocked:
		return "EEPROM locked"
	case RNodeErrQueueFull:
		return "packet queue full"
	case RNodeErrMemoryLow:
		return "memory low"
	case RNodeErrModemTimeout:
		return "modem communication timed out"
	}
	return fmt.Sprintf("error 0x%02x", e.Code)
}

// Fatal reports whether the device is unusable after this error: the
// radio did not start or a transmission failed in hardware.
func (e *DeviceError) Fatal() bool {
	return e.Code != RNodeErrQueueFull && e.Code != RNodeErrMemoryLow && e.Code != RNodeErrModemTimeout
}

// ChannelStats is what an RNode reports in RNodeStatChannel: its own
// airtime and the channel's load, in percent, over the short (about 15 s)
// and long (60 min) windows, and RSSI readings in dBm.
type ChannelStats struct {
	AirtimeShort, AirtimeLong         float64
	ChannelLoadShort, ChannelLoadLong float64
	CurrentRSSI, NoiseFloor           int
	Interference                      bool
	InterferenceRSSI                  int // valid if Interference
}

// PHYStats is what an RNode reports in RNodeStatPHY.
type PHYStats struct {
	SymbolTimeUS    int // microseconds
	SymbolRate      int // baud
	PreambleSymbols int
	PreambleTimeMS  int
	CSMASlotMS      int
	DIFSMS          int
}

// shortReply reports a device reply shorter than its command needs.
func shortReply(cmd byte, need, got int) error {
	return fmt.Errorf("lora: rnode reply 0x%02x has %d bytes, want %d", cmd, got, need)
}

// Decoders of device replies. Each checks the length (a longer reply from
// newer firmware is read up to what it knows) and never panics.

func decodeU32(cmd byte, b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, shortReply(cmd, 4, len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

func decodeByte(cmd byte, b []byte) (byte, error) {
	if len(b) < 1 {
		return 0, shortReply(cmd, 1, len(b))
	}
	return b[0], nil
}

func decodeVersion(b []byte) (major, minor int, err error) {
	if len(b) < 2 {
		return 0, 0, shortReply(RNodeFWVersion, 2, len(b))
	}
	return int(b[0]), int(b[1]), nil
}

// decodeLock reads an airtime lock: uint16 percent × 100.
func decodeLock(cmd byte, b []byte) (float64, error) {
	if len(b) < 2 {
		return 0, shortReply(cmd, 2, len(b))
	}
	return float64(binary.BigEndian.Uint16(b)) / 100, nil
}

func decodeChannelStats(b []byte) (ChannelStats, error) {
	if len(b) < 11 {
		return ChannelStats{}, shortReply(RNodeStatChannel, 11, len(b))
	}
	u := func(i int) float64 { return float64(binary.BigEndian.Uint16(b[i:])) / 100 }
	s := ChannelStats{
		AirtimeShort: u(0), AirtimeLong: u(2),
		ChannelLoadShort: u(4), ChannelLoadLong: u(6),
		CurrentRSSI: int(b[8]) - RNodeRSSIOffset,
		NoiseFloor:  int(b[9]) - RNodeRSSIOffset,
	}
	if b[10] != 0xFF {
		s.Interference = true
		s.InterferenceRSSI = int(b[10]) - RNodeRSSIOffset
	}
	return s, nil
}

func decodePHYStats(b []byte) (PHYStats, error) {
	if len(b) < 12 {
		return PHYStats{}, shortReply(RNodeStatPHY, 12, len(b))
	}
	u := func(i int) int { return int(binary.BigEndian.Uint16(b[i:])) }
	return PHYStats{
		SymbolTimeUS: u(0), SymbolRate: u(2), PreambleSymbols: u(4),
		PreambleTimeMS: u(6), CSMASlotMS: u(8), DIFSMS: u(10),
	}, nil
}

// decodeRSSI turns the RNodeStatRSSI byte into dBm.
func decodeRSSI(b []byte) (int, error) {
	v, err := decodeByte(RNodeStatRSSI, b)
	return int(v) - RNodeRSSIOffset, err
}

// decodeSNR turns the RNodeStatSNR byte (signed, quarter dB) into dB.
func decodeSNR(b []byte) (float64, error) {
	v, err := decodeByte(RNodeStatSNR, b)
	return float64(int8(v)) / 4, err
}
