package lora

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// MaxPHYPayload is the largest payload of one explicit-header LoRa packet
// on SX127x and SX126x radios.
const MaxPHYPayload = 255

// LowDataRate selects low-data-rate optimisation.
type LowDataRate int

const (
	// LDRAuto turns it on when the symbol time is 16 ms or more, as
	// LoRaWAN and RNode do (SF11 and SF12 at 125 kHz).
	LDRAuto LowDataRate = iota
	LDROn
	LDROff
)

// Params are the LoRa modulation parameters that determine airtime. The
// zero Preamble means 8 symbols.
type Params struct {
	SpreadingFactor int // 6..12
	Bandwidth       int // Hz, 7800..500000
	CodingRate      int // 5..8 for 4/5..4/8
	Preamble        int // programmed preamble length in symbols (0: 8)
	ImplicitHeader  bool
	NoCRC           bool
	LowDataRate     LowDataRate
}

// ErrParams matches invalid modulation parameters.
var ErrParams = errors.New("lora: invalid radio parameters")

// Validate reports parameters the formula is not defined for.
func (p Params) Validate() error {
	switch {
	case p.SpreadingFactor < 6 || p.SpreadingFactor > 12:
		return fmt.Errorf("%w: spreading factor %d (want 6..12)", ErrParams, p.SpreadingFactor)
	case p.Bandwidth < 7800 || p.Bandwidth > 500000:
		return fmt.Errorf("%w: bandwidth %d Hz (want 7800..500000)", ErrParams, p.Bandwidth)
	case p.CodingRate < 5 || p.CodingRate > 8:
		return fmt.Errorf("%w: coding rate 4/%d (want 4/5..4/8)", ErrParams, p.CodingRate)
	case p.Preamble < 0 || p.Preamble > 65535:
		return fmt.Errorf("%w: preamble %d symbols", ErrParams, p.Preamble)
	}
	return nil
}

// SymbolTime is 2^SF / BW.
func (p Params) SymbolTime() time.Duration {
	return p.symbols4(4) // four quarter-symbols
}

// LowDataRateOn reports whether low-data-rate optimisation applies.
func (p Params) LowDataRateOn() bool {
	switch p.LowDataRate {
	case LDROn:
		return true
	case LDROff:
		return false
	}
	// 2^SF / BW >= 16 ms, in integers.
	return (int64(1)<<p.SpreadingFactor)*1000 >= 16*int64(p.Bandwidth)
}

// PayloadSymbols is the number of symbols after the preamble for a payload
// of n bytes (the Semtech n_payload, header and CRC included).
func (p Params) PayloadSymbols(n int) int {
	sf := p.SpreadingFactor
	crc, ih, de := 1, 0, 0
	if p.NoCRC {
		crc = 0
	}
	if p.ImplicitHeader {
		ih = 1
	}
	if p.LowDataRateOn() {
		de = 1
	}
	num := 8*n - 4*sf + 28 + 16*crc - 20*ih
	den := 4 * (sf - 2*de)
	blocks := 0
	if num > 0 {
		blocks = (num + den - 1) / den
	}
	return 8 + blocks*p.CodingRate
}

// Airtime is the time on air of one packet with an n-byte payload:
// (preamble + 4.25 + PayloadSymbols(n)) symbols. Parameters that do not
// Validate give 0.
func (p Params) Airtime(n int) time.Duration {
	if p.Validate() != nil || n < 0 {
		return 0
	}
	pre := p.Preamble
	if pre == 0 {
		pre = 8
	}
	// In quarter symbols, so that the 4.25 stays an integer.
	q := 4*(pre+p.PayloadSymbols(n)) + 17
	return p.symbols4(q)
}

// symbols4 is the duration of q quarter-symbols, rounded to the nearest
// nanosecond: q * 2^SF * 1e9 / (4 * BW), computed in 128 bits.
func (p Params) symbols4(q int) time.Duration {
	if p.Bandwidth <= 0 || p.SpreadingFactor < 0 || p.SpreadingFactor > 30 || q < 0 {
		return 0
	}
	den := 4 * uint64(p.Bandwidth)
	hi, lo := bits.Mul64(uint64(q)<<p.SpreadingFactor, uint64(time.Second))
	lo, carry := bits.Add64(lo, den/2, 0)
	hi += carry
	if hi >= den {
		return time.Duration(1<<63 - 1)
	}
	quo, _ := bits.Div64(hi, lo, den)
	if quo > 1<<63-1 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(quo)
}

// MaxPayloadWithin is the largest payload, at most MaxPHYPayload, whose
// airtime is at most d; -1 if not even an empty packet fits.
func (p Params) MaxPayloadWithin(d time.Duration) int {
	lo, hi := -1, MaxPHYPayload // airtime grows with n: binary search
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if p.Airtime(mid) <= d && p.Validate() == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// BitRate is the nominal LoRa bit rate in bit/s: SF * BW / 2^SF * 4/CR.
func (p Params) BitRate() float64 {
	if p.Validate() != nil {
		return 0
	}
	return float64(p.SpreadingFactor) * float64(p.Bandwidth) / float64(int64(1)<<p.SpreadingFactor) * 4 / float64(p.CodingRate)
}

// RNodeAirtime is the airtime of an n-byte payload sent through an RNode:
// the firmware prefixes each LoRa packet with a 1-byte header and splits a
// payload over 254 bytes into two packets.
func (p Params) RNodeAirtime(n int) time.Duration {
	if n <= MaxPHYPayload-1 {
		return p.Airtime(n + 1)
	}
	return p.Airtime(MaxPHYPayload) + p.Airtime(n-(MaxPHYPayload-1)+1)
}
