package reducer_test

import (
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

const benchEvents = 100_000

// BenchmarkApply replays 100k realistic events and hashes the state once,
// as opening a backpack without a cache does.
func BenchmarkApply(b *testing.B) {
	events := realisticLog(b, benchEvents, 1)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		s := reducer.New()
		for _, ev := range events {
			if err := s.Apply(ev); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.StateHash(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
}

// reportCPU reports the process CPU time per iteration since start
// (including the garbage collector's).
func reportCPU(b *testing.B, start time.Duration) {
	if start > 0 {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkApplyOneAndHash applies one event to a 100k-event state and
// hashes it, as appending to a large backpack does.
func BenchmarkApplyOneAndHash(b *testing.B) {
	events := realisticLog(b, benchEvents+20_000, 1)
	s := reducer.New()
	for _, ev := range events[:benchEvents] {
		s.Apply(ev)
	}
	if _, err := s.StateHash(); err != nil {
		b.Fatal(err)
	}
	more := events[benchEvents:]
	i := 0
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		s.Apply(more[i%len(more)])
		i++
		if _, err := s.StateHash(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

func bigState(b *testing.B) *reducer.State {
	b.Helper()
	s := reducer.New()
	for _, ev := range realisticLog(b, benchEvents, 1) {
		s.Apply(ev)
	}
	if _, err := s.StateHash(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkFullHash hashes a 100k-event state from scratch (no caches).
func BenchmarkFullHash(b *testing.B) {
	events := realisticLog(b, benchEvents, 1)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s := reducer.New()
		for _, ev := range events {
			s.Apply(ev)
		}
		b.StartTimer()
		if _, err := s.StateHash(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalBinary encodes a 100k-event state for the cache file.
func BenchmarkMarshalBinary(b *testing.B) {
	s := bigState(b)
	bin, _ := s.MarshalBinary()
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkUnmarshalBinary decodes a 100k-event state and hashes it, as
// opening a backpack from its cache does.
func BenchmarkUnmarshalBinary(b *testing.B) {
	bin, err := bigState(b).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		var s reducer.State
		if err := s.UnmarshalBinary(bin); err != nil {
			b.Fatal(err)
		}
		if _, err := s.StateHash(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkRestoreJSON is the canonical JSON alternative to the binary
// form: parse the preimage and the evidence, Restore, hash.
func BenchmarkRestoreJSON(b *testing.B) {
	s := bigState(b)
	pre, err := s.HashPreimage()
	if err != nil {
		b.Fatal(err)
	}
	ev, err := canon.Encode(s.Evidence())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pre) + len(ev)))
	lim := canon.Limits{MaxSize: 1 << 30}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		p, err := lim.Parse(pre)
		if err != nil {
			b.Fatal(err)
		}
		e, err := lim.Parse(ev)
		if err != nil {
			b.Fatal(err)
		}
		r, err := reducer.Restore(p, e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.StateHash(); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkClone copies a 100k-event state for publishing to readers.
func BenchmarkClone(b *testing.B) {
	s := bigState(b)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		s.Clone()
	}
	reportCPU(b, cpu)
}
