package lora_test

import (
	"errors"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
)

func TestQueueOrder(t *testing.T) {
	q := lora.NewQueue(0)
	q.Push(lora.Backfill, []byte("b1"))
	q.Push(lora.Relay, []byte("r1"))
	q.Push(lora.Own, []byte("o1"))
	q.Push(lora.Relay, []byte("r2"))
	q.Push(lora.Own, []byte("o2"))
	var got []string
	for {
		p, _, ok := q.Pop()
		if !ok {
			break
		}
		got = append(got, string(p))
	}
	want := []string{"o1", "o2", "r1", "r2", "b1"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestQueueEvicts(t *testing.T) {
	q := lora.NewQueue(10)
	q.Push(lora.Backfill, make([]byte, 4))
	q.Push(lora.Backfill, make([]byte, 4))
	if ev, err := q.Push(lora.Own, make([]byte, 5)); err != nil || ev != 1 {
		t.Fatalf("push own: evicted %d, %v", ev, err)
	}
	if _, err := q.Push(lora.Backfill, make([]byte, 2)); !errors.Is(err, lora.ErrQueueFull) {
		t.Fatalf("push backfill into full queue: %v", err)
	}
	if q.Bytes() != 9 || q.ClassLen(lora.Backfill) != 1 || q.ClassBytes(lora.Own) != 5 {
		t.Fatalf("bytes %d, backfill %d", q.Bytes(), q.ClassLen(lora.Backfill))
	}
}

func TestQueueNextAndETA(t *testing.T) {
	p := lora.Params{SpreadingFactor: 12, Bandwidth: 125000, CodingRate: 5}
	b := lora.NewBudget(lora.EU868, p) // 36 s/h; one 255 B frame is 9.02 s
	q := lora.NewQueue(0)
	for range 5 {
		q.Push(lora.Backfill, make([]byte, 255))
	}
	q.Push(lora.Own, make([]byte, 255))
	per, total := q.ETA(t0, b)
	air := p.Airtime(255)
	// Three frames fit into the allowance back to back; the fourth waits
	// until the first has left the window (1 h after it ended, minus its
	// own airtime), and the last two follow it back to back.
	if per[lora.Own] != air {
		t.Errorf("own ETA %v, want %v", per[lora.Own], air)
	}
	if want := time.Hour + 3*air; total != want || per[lora.Backfill] != total {
		t.Errorf("total ETA %v (backfill %v), want %v", total, per[lora.Backfill], want)
	}
	if per[lora.Relay] != 0 {
		t.Errorf("relay ETA %v", per[lora.Relay])
	}
	now := t0
	sent := 0
	for q.Len() > 0 {
		f, c, wait, err := q.Next(now, b)
		if err != nil {
			t.Fatal(err)
		}
		if wait > 0 {
			now = now.Add(wait)
			continue
		}
		if sent == 0 && c != lora.Own || len(f) != 255 {
			t.Fatalf("frame %d: class %v", sent, c)
		}
		sent++
		now = now.Add(air)
	}
	if got := now.Sub(t0); got != total {
		t.Errorf("sending took %v, ETA said %v", got, total)
	}
}
