package canon_test

import (
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

var benchLine = []byte(`{"actor":"field_team_3","actor_key_id":"bp1_56475aa75463474c","event_id":"evt_f12b740da8e0169554e72121","namespace":"local","payload":{"confidence":0.9,"predicate":"status","subject":"waterpoint_0042","value":"working"},"prev_event_hash":"evt_300d92c6a65bd3be7e09accc","sig":"ihz0QCA2abhaU/KMIT2xRP6LysuvHGMBuK7kPSYxp7/wGCp4NKBHb81ws//k90Tiqf7d3YTnlawgOQFgfB0aBw==","timestamp_utc":"2026-01-02T03:04:05.000001+00:00","ts_logical":1,"type":"OBSERVATION"}`)

func BenchmarkParseEvent(b *testing.B) {
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := canon.Parse(benchLine); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	v, _ := canon.Parse(benchLine)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = canon.AppendEncode(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
