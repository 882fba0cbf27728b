package lora_test

import (
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
)

func TestAirtimeTable(t *testing.T) {
	// LORA.md §2: BW 125 kHz, CR 4/5, 8-symbol preamble, explicit header,
	// CRC on; values in ms to 0.1 ms.
	table := map[int][4]float64{ // SF: 51 B, 222 B, 237 B, 255 B
		7:  {102.7, 348.4, 374.0, 399.6},
		8:  {184.8, 614.9, 655.9, 707.1},
		9:  {328.7, 1106.9, 1168.4, 1250.3},
		10: {616.4, 2009.1, 2132.0, 2295.8},
		11: {1314.8, 4427.8, 4673.5, 5001.2},
		12: {2465.8, 8036.4, 8527.9, 9019.4},
	}
	for sf, row := range table {
		p := lora.Params{SpreadingFactor: sf, Bandwidth: 125000, CodingRate: 5}
		for i, n := range []int{51, 222, 237, 255} {
			got := float64(p.Airtime(n)) / 1e6
			if d := got - row[i]; d > 0.05 || d < -0.05 {
				t.Errorf("SF%d %d B: %.3f ms, want %.1f ms", sf, n, got, row[i])
			}
		}
	}
}

func TestAirtimeByHand(t *testing.T) {
	tests := []struct {
		name string
		p    lora.Params
		n    int
		want time.Duration
	}{
		// SF7/125k, 51 B: num = 408-28+28+16 = 424, den 28, ceil 16 blocks,
		// 8+16*5 = 88 symbols; 8+4.25+88 = 100.25 * 1.024 ms.
		{"sf7 51B", lora.Params{SpreadingFactor: 7, Bandwidth: 125000, CodingRate: 5}, 51, 102656 * time.Microsecond},
		// SF12/125k, LDRO on (32.768 ms symbols), 10 B: num = 80-48+28+16 = 76,
		// den 4*(12-2) = 40, 2 blocks, 8+2*5 = 18; 30.25 symbols.
		{"sf12 ldro 10B", lora.Params{SpreadingFactor: 12, Bandwidth: 125000, CodingRate: 5}, 10, 991232 * time.Microsecond},
		// Same with LDRO forced off: den 48, 2 blocks: unchanged here.
		{"sf12 no ldro 10B", lora.Params{SpreadingFactor: 12, Bandwidth: 125000, CodingRate: 5, LowDataRate: lora.LDROff}, 10, 991232 * time.Microsecond},
		// SF9/500k, CR 4/8, implicit, no CRC, 0 B: num = -36+28-20 < 0,
		// 8 symbols; 8+4.25+8 = 20.25 * 1.024 ms.
		{"sf9 500k implicit empty", lora.Params{SpreadingFactor: 9, Bandwidth: 500000, CodingRate: 8, ImplicitHeader: true, NoCRC: true}, 0, 20736 * time.Microsecond},
		// SF6/125k, CR 4/6, preamble 12, implicit, 20 B: num = 160-24+28+16-20 = 160,
		// den 24, 7 blocks*6 = 42+8 = 50; 12+4.25+50 = 66.25 * 0.512 ms.
		{"sf6 implicit", lora.Params{SpreadingFactor: 6, Bandwidth: 125000, CodingRate: 6, Preamble: 12, ImplicitHeader: true}, 20, 33920 * time.Microsecond},
		// SF10/62.5k: 16.384 ms symbols, LDRO auto on. 20 B: num = 160-40+44 = 164,
		// den 4*8 = 32, 6 blocks*5 = 30+8 = 38; 50.25 symbols.
		{"sf10 62.5k ldro", lora.Params{SpreadingFactor: 10, Bandwidth: 62500, CodingRate: 5}, 20, 823296 * time.Microsecond},
		// SF7/7.8 kHz: T_sym = 128/7800 s = 16.41 ms, so LDRO is on. 13 B:
		// num = 104-28+44 = 120, den 4*(7-2) = 20, 6 blocks*5+8 = 38;
		// 50.25 * 16.410256 ms = 824.615385 ms.
		{"sf7 7.8k", lora.Params{SpreadingFactor: 7, Bandwidth: 7800, CodingRate: 5}, 13, 824615385 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Airtime(tt.n); got != tt.want {
				t.Errorf("Airtime(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestLowDataRateAuto(t *testing.T) {
	for _, tt := range []struct {
		sf, bw int
		on     bool
	}{{10, 125000, false}, {11, 125000, true}, {12, 125000, true}, {10, 62500, true}, {12, 250000, true}, {12, 500000, false}, {9, 31250, true}} {
		p := lora.Params{SpreadingFactor: tt.sf, Bandwidth: tt.bw, CodingRate: 5}
		if p.LowDataRateOn() != tt.on {
			t.Errorf("SF%d/%d Hz: LDRO %v, want %v (T_sym %v)", tt.sf, tt.bw, !tt.on, tt.on, p.SymbolTime())
		}
	}
}

func TestMaxPayloadWithinDwell(t *testing.T) {
	// LORA.md §3: largest 125 kHz payload within 400 ms.
	want := map[int]int{7: 255, 8: 138, 9: 66, 10: 24}
	for sf, n := range want {
		p := lora.Params{SpreadingFactor: sf, Bandwidth: 125000, CodingRate: 5}
		if got := p.MaxPayloadWithin(400 * time.Millisecond); got != n {
			t.Errorf("SF%d: %d B, want %d B", sf, got, n)
		}
	}
	p := lora.Params{SpreadingFactor: 12, Bandwidth: 125000, CodingRate: 5}
	if got := p.MaxPayloadWithin(400 * time.Millisecond); got != -1 {
		t.Errorf("SF12: %d, want -1", got)
	}
}

func TestParamsValidate(t *testing.T) {
	bad := []lora.Params{{SpreadingFactor: 5, Bandwidth: 125000, CodingRate: 5}, {SpreadingFactor: 7, Bandwidth: 600000, CodingRate: 5}, {SpreadingFactor: 7, Bandwidth: 125000, CodingRate: 4}}
	for _, p := range bad {
		if p.Validate() == nil || p.Airtime(10) != 0 {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestRNodeAirtime(t *testing.T) {
	p := lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	if got, want := p.RNodeAirtime(100), p.Airtime(101); got != want {
		t.Errorf("100 B: %v, want %v", got, want)
	}
	if got, want := p.RNodeAirtime(464), p.Airtime(255)+p.Airtime(211); got != want {
		t.Errorf("464 B: %v, want %v", got, want)
	}
}
