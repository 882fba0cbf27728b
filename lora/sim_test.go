package lora_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/backpack-field/backpack/lora"
)

func TestSimLink(t *testing.T) {
	testLink(t, func(t *testing.T) (lora.Link, lora.Link) {
		m := lora.NewMedium(lora.MediumOptions{Seed: 1, TimeScale: 1e-4})
		a, b := m.Attach(lora.SimLinkOptions{}), m.Attach(lora.SimLinkOptions{})
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	})
}

// exchange sends n numbered frames from a to b and returns what b got
// until the medium has been quiet for a minute.
func exchange(t *testing.T, m *lora.Medium, a, b *lora.SimLink, n int) []string {
	t.Helper()
	go func() {
		for i := range n {
			if err := a.Send(t.Context(), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []string
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		f, err := b.Recv(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(f.Payload))
	}
}

func TestSimDeterministic(t *testing.T) {
	run := func(seed uint64) (got []string, st lora.Stats) {
		synctest.Test(t, func(t *testing.T) {
			m := lora.NewMedium(lora.MediumOptions{Seed: seed, Loss: 0.2, Duplicate: 0.2, Reorder: 0.2})
			a, b := m.Attach(lora.SimLinkOptions{}), m.Attach(lora.SimLinkOptions{})
			got = exchange(t, m, a, b, 300)
			st = b.Stats()
			a.Close()
			b.Close()
		})
		return got, st
	}
	got1, st1 := run(7)
	got2, st2 := run(7)
	if fmt.Sprint(got1) != fmt.Sprint(got2) || st1 != st2 {
		t.Fatalf("seed 7 gave two different runs:\n%v\n%v", got1, got2)
	}
	got3, _ := run(8)
	if fmt.Sprint(got1) == fmt.Sprint(got3) {
		t.Error("seeds 7 and 8 gave the same run")
	}
	// 300 frames, 20 % lost, 20 % of the rest twice.
	if st1.FramesLost < 30 || st1.FramesLost > 90 || st1.FramesReceived < 250 || st1.FramesReceived > 330 {
		t.Errorf("stats %+v", st1)
	}
	inOrder := true
	for i := 1; i < len(got1); i++ {
		var x, y int
		fmt.Sscan(got1[i-1], &x)
		fmt.Sscan(got1[i], &y)
		inOrder = inOrder && x <= y
	}
	if inOrder {
		t.Error("no frame was reordered")
	}
}

func TestSimAirtimeAndDutyCycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := lora.Params{SpreadingFactor: 12, Bandwidth: 125000, CodingRate: 5}
		m := lora.NewMedium(lora.MediumOptions{Seed: 1})
		a := m.Attach(lora.SimLinkOptions{Params: p, Region: lora.EU868})
		b := m.Attach(lora.SimLinkOptions{Params: p, Region: lora.EU868})
		start := time.Now()
		if err := a.Send(t.Context(), make([]byte, 255)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != p.Airtime(255) {
			t.Errorf("send took %v, want the airtime %v", d, p.Airtime(255))
		}
		if _, err := b.Recv(t.Context()); err != nil {
			t.Fatal(err)
		}
		// 36 s per hour at 1 %: 3 more frames go at once, the 5th waits
		// for the first to leave the window.
		for range 4 {
			if err := a.Send(t.Context(), make([]byte, 255)); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d < time.Hour {
			t.Errorf("5 SF12 frames under 1 %% took %v, want over an hour", d)
		}
		st := a.Stats()
		if st.DutyWait < 59*time.Minute || st.Airtime != 5*p.Airtime(255) || st.FramesSent != 5 {
			t.Errorf("stats %+v", st)
		}
		if err := a.Send(t.Context(), make([]byte, 256)); !errors.Is(err, lora.ErrTooLarge) {
			t.Errorf("256 B: %v", err)
		}
		us := m.Attach(lora.SimLinkOptions{Params: p, Region: lora.US915})
		if err := us.Send(t.Context(), []byte("x")); !errors.Is(err, lora.ErrDwell) {
			t.Errorf("SF12 under US915: %v, want ErrDwell", err)
		}
	})
}

func TestSimTopology(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lora.NewMedium(lora.MediumOptions{Seed: 3})
		a, b, c := m.Attach(lora.SimLinkOptions{}), m.Attach(lora.SimLinkOptions{}), m.Attach(lora.SimLinkOptions{})
		other := m.Attach(lora.SimLinkOptions{Params: lora.Params{SpreadingFactor: 7, Bandwidth: 125000, CodingRate: 5}})
		hears := func(from *lora.SimLink, msg string) (got []int) {
			if err := from.Send(t.Context(), []byte(msg)); err != nil {
				t.Fatal(err)
			}
			for _, l := range []*lora.SimLink{a, b, c, other} {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				f, err := l.Recv(ctx)
				cancel()
				if err == nil && string(f.Payload) == msg {
					got = append(got, l.ID())
				}
			}
			return got
		}
		if got := fmt.Sprint(hears(a, "all")); got != "[1 2]" {
			t.Errorf("open medium: a is heard by %s", got)
		}
		m.SetRange(a, c, false)
		if got := fmt.Sprint(hears(a, "range")); got != "[1]" {
			t.Errorf("c out of a's range: a is heard by %s", got)
		}
		if got := fmt.Sprint(hears(c, "back")); got != "[0 1]" {
			t.Errorf("range is directed: c is heard by %s", got)
		}
		m.SetRange(a, c, true)
		m.Partition([]*lora.SimLink{a}, []*lora.SimLink{b, c})
		if got := fmt.Sprint(hears(a, "split")); got != "[]" {
			t.Errorf("partitioned: a is heard by %s", got)
		}
		if got := fmt.Sprint(hears(b, "split2")); got != "[2]" {
			t.Errorf("partitioned: b is heard by %s", got)
		}
		m.Heal()
		if got := fmt.Sprint(hears(b, "healed")); got != "[0 2]" {
			t.Errorf("healed: b is heard by %s", got)
		}
	})
}

func TestSimCollisions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := lora.NewMedium(lora.MediumOptions{Seed: 1, Collisions: true})
		a, b, c := m.Attach(lora.SimLinkOptions{}), m.Attach(lora.SimLinkOptions{}), m.Attach(lora.SimLinkOptions{})
		done := make(chan struct{})
		for _, l := range []*lora.SimLink{a, b} {
			go func() {
				l.Send(t.Context(), []byte("at once"))
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if f, err := c.Recv(ctx); err == nil {
			t.Fatalf("c heard %q through a collision", f.Payload)
		}
		if st := c.Stats(); st.FramesLost != 2 {
			t.Errorf("c lost %d frames, want 2", st.FramesLost)
		}
		// One at a time, frames get through.
		a.Send(t.Context(), []byte("alone"))
		if f, err := c.Recv(t.Context()); err != nil || string(f.Payload) != "alone" {
			t.Errorf("after the collision: %q %v", f.Payload, err)
		}
	})
}
