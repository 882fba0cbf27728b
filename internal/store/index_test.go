package store

import (
	"testing"

	bplog "github.com/backpack-field/backpack/log"
)

// FuzzDecodeIndex: the cache's index decoder never panics, and what it
// accepts re-encodes to the same bytes.
func FuzzDecodeIndex(f *testing.F) {
	x := newLogIndex()
	x.addItem(bplog.OrderItem{ID: "evt_1", Timestamp: "2026-01-01T00:00:00+00:00"}, "a", [32]byte{1})
	x.addItem(bplog.OrderItem{ID: "evt_2", Prev: "evt_1", HasPrev: true, Timestamp: "2026-01-01T00:00:01+00:00"}, "a", [32]byte{2})
	f.Add(x.encode())
	f.Add([]byte("BPIDX1\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := decodeIndex(data)
		if err != nil {
			return
		}
		if y, err := decodeIndex(x.encode()); err != nil || len(y.items) != len(x.items) {
			t.Fatalf("index does not round-trip: %v", err)
		}
	})
}
