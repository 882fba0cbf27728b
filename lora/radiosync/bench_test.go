package radiosync_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosync"
	"github.com/klauspost/compress/zstd"
)

// sf9 is the modulation the benchmarks report airtime for.
var sf9 = lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}

// onAir returns the frames, bytes on air and airtime of sending a batch
// of n bytes in DATA frames of at most 255 bytes.
func onAir(n int) (frames, bytes int, air time.Duration) {
	room := lora.MaxPHYPayload - radiosync.DataOverhead
	for n > 0 {
		k := min(n, room)
		frames++
		bytes += k + radiosync.DataOverhead
		air += sf9.Airtime(k + radiosync.DataOverhead)
		n -= k
	}
	return frames, bytes, air
}

// BenchmarkCompact encodes batches of 1, 10 and 100 consecutive events
// from the second half of a generated 2,000-event log and reports bytes
// per event for: the canonical lines as they are, plain zstd of the lines
// (default level, no dictionary), the compact batch without and with the
// shared-log dictionary (cut at the event before the batch), and, for the
// compact batch with dictionary, DATA frames, bytes and SF9 airtime on
// air per event.
func BenchmarkCompact(b *testing.B) {
	c := testCorpus(b)
	plain, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			var codec radiosync.Codec
			type batch struct {
				lines [][]byte
				opts  radiosync.EncodeOptions
			}
			var batches []batch
			for start := 1000; start+n <= 2000 && len(batches) < 300/n+5; start += n {
				batches = append(batches, batch{c.lines[start : start+n], radiosync.EncodeOptions{
					Dict: radiosync.BuildDict(c.events, cutAt(c, start)), Holds: holdsFirst(c, start), KeyOf: keyOfFirst(c, start)}})
			}
			var events, lineB, zB, compactB, dictB, frames, air int
			var airT time.Duration
			for _, bt := range batches {
				events += len(bt.lines)
				var joined []byte
				for _, l := range bt.lines {
					lineB += len(l) + 1
					joined = append(append(joined, l...), '\n')
				}
				zB += len(plain.EncodeAll(joined, nil))
				blob, err := codec.Encode(bt.lines, radiosync.EncodeOptions{Holds: bt.opts.Holds})
				if err != nil {
					b.Fatal(err)
				}
				compactB += len(blob)
				blob, err = codec.Encode(bt.lines, bt.opts)
				if err != nil {
					b.Fatal(err)
				}
				dictB += len(blob)
				f, on, t := onAir(len(blob))
				frames += f
				air += on
				airT += t
			}
			ev := float64(events)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bt := batches[i%len(batches)]
				if _, err := codec.Encode(bt.lines, bt.opts); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(lineB)/ev, "line-B/event")
			b.ReportMetric(float64(zB)/ev, "zstd-B/event")
			b.ReportMetric(float64(compactB)/ev, "compact-B/event")
			b.ReportMetric(float64(dictB)/ev, "dict-B/event")
			b.ReportMetric(float64(frames)/ev, "frames/event")
			b.ReportMetric(float64(air)/ev, "air-B/event")
			b.ReportMetric(float64(airT.Milliseconds())/ev, "SF9-ms/event")
		})
	}
}

// BenchmarkDecode measures re-materialising a 10-event batch.
func BenchmarkDecode(b *testing.B) {
	c := testCorpus(b)
	dict := radiosync.BuildDict(c.events, cutAt(c, 1500))
	var codec radiosync.Codec
	blob, err := codec.Encode(c.lines[1500:1510], radiosync.EncodeOptions{Dict: dict, Holds: holdsFirst(c, 1500), KeyOf: keyOfFirst(c, 1500)})
	if err != nil {
		b.Fatal(err)
	}
	resolve := resolverFirst(c, 1500)
	b.ReportAllocs()
	for b.Loop() {
		h, err := radiosync.ParseBatchHeader(blob)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := codec.Decode(h, dict, resolve); err != nil {
			b.Fatal(err)
		}
	}
}
