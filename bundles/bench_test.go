package bundles_test

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

var (
	benchMu     sync.Mutex
	benchEvents = map[int][][]byte{}
)

// benchLog returns n realistic events, generated once per n.
func benchLog(b *testing.B, n int) [][]byte {
	benchMu.Lock()
	defer benchMu.Unlock()
	if ev, ok := benchEvents[n]; ok {
		return ev
	}
	ev, _ := realistic(b, n, 42)
	benchEvents[n] = ev
	return ev
}

// frontierOf returns the frontier of a set of events in file order.
func frontierOf(tb testing.TB, events [][]byte) bplog.Frontier {
	tb.Helper()
	fr := bplog.Frontier{}
	for _, line := range events {
		e, err := bplog.Parse(line)
		if err != nil {
			tb.Fatal(err)
		}
		fr[e.Actor] = bplog.ActorHead{Head: e.ID, Count: fr[e.Actor].Count + 1}
	}
	return fr
}

func contentSize(events [][]byte) int64 {
	n := int64(0)
	for _, e := range events {
		n += int64(len(e)) + 1
	}
	return n
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			events := benchLog(b, n)
			h := header(frontierOf(b, events))
			key := testKey(b, 0).Key
			b.SetBytes(contentSize(events))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bundles.Encode(io.Discard, h, events, key, bundles.EncodeOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			events := benchLog(b, n)
			data := encode(b, events, frontierOf(b, events))
			b.SetBytes(contentSize(events))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bundles.Decode(bytes.NewReader(data), bundles.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSize reports bundle bytes per event for delta batches: a
// receiver holds the first 1,000 events of a 5-actor log, and the sender
// exports the next n. ref_B/event is the reference's uncompressed
// provara_delta_v1 bundle of the same events with the 5 keys.
func BenchmarkSize(b *testing.B) {
	const held = 1000
	all := benchLog(b, held+1000)
	basis := frontierOf(b, all[:held])
	var keys []canon.Value
	for i := range 5 {
		keys = append(keys, bplog.KeyEntry(testKey(b, i).Public(), []string{"device"}, "2026-03-01T08:00:00+00:00"))
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedDefault, zstd.SpeedBestCompression} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("level=%s/events=%d", level, n), func(b *testing.B) {
				batch := all[held : held+n]
				h := header(frontierOf(b, all[:held+n]))
				h.Basis = basis
				var ref bytes.Buffer
				if err := bundles.EncodeReference(&ref, batch, canon.ArrayValue(keys...), canon.StringValue("evt_0"), h.CreatedAt); err != nil {
					b.Fatal(err)
				}
				var buf bytes.Buffer
				b.ReportAllocs()
				for b.Loop() {
					buf.Reset()
					if _, err := bundles.Encode(&buf, h, batch, testKey(b, 0).Key, bundles.EncodeOptions{Level: level}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(buf.Len())/float64(n), "B/event")
				b.ReportMetric(float64(ref.Len())/float64(n), "ref_B/event")
				b.ReportMetric(float64(contentSize(batch))/float64(n), "line_B/event")
			})
		}
	}
}
