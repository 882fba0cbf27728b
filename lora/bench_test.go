package lora_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/backpack-field/backpack/lora"
)

func kissPayload(n int) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func BenchmarkKISSEncode(b *testing.B) {
	for _, n := range []int{64, 255, 508} {
		b.Run(itoa(n), func(b *testing.B) {
			p := kissPayload(n)
			buf := make([]byte, 0, 2*n+3)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				buf = lora.AppendFrame(buf[:0], 0, p)
			}
		})
	}
}

func BenchmarkKISSDecode(b *testing.B) {
	for _, n := range []int{64, 255, 508} {
		b.Run(itoa(n), func(b *testing.B) {
			var stream []byte
			const frames = 256
			for range frames {
				stream = lora.AppendFrame(stream, 0, kissPayload(n))
			}
			r := bytes.NewReader(stream)
			b.SetBytes(int64(n * frames))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(stream)
				d := lora.NewDecoder(r, 1024)
				for {
					if _, _, err := d.Next(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkAirtime(b *testing.B) {
	p := lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		_ = p.Airtime(n & 255)
		n++
	}
}

func itoa(n int) string {
	return string(rune('0'+n/100)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10)) + "B"
}
