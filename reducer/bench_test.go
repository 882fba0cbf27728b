package reducer_test

import (
	"testing"

	"github.com/backpack-field/backpack/reducer"
)

const benchEvents = 100_000

// BenchmarkApply replays 100k realistic events and hashes the state once,
// as opening a backpack without a cache does.
func BenchmarkApply(b *testing.B) {
	events := realisticLog(b, benchEvents, 1)
	b.ReportAllocs()
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
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
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
	for b.Loop() {
		s.Apply(more[i%len(more)])
		i++
		if _, err := s.StateHash(); err != nil {
			b.Fatal(err)
		}
	}
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
