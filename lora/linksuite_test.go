package lora_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
)

// testLink is the conformance suite every Link implementation passes:
// newPair returns two links that hear each other without loss.
func testLink(t *testing.T, newPair func(t *testing.T) (a, b lora.Link)) {
	t.Run("exchange", func(t *testing.T) {
		a, b := newPair(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for i := range 20 {
			msg := bytes.Repeat([]byte{byte(i), lora.FEND, lora.FESC}, 1+i)
			if err := a.Send(ctx, msg); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			f, err := b.Recv(ctx)
			if err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
			if !bytes.Equal(f.Payload, msg) {
				t.Fatalf("frame %d = % x, want % x", i, f.Payload, msg)
			}
		}
		full := bytes.Repeat([]byte{0xAB}, b.MTU())
		if err := b.Send(ctx, full); err != nil {
			t.Fatalf("send MTU-sized frame: %v", err)
		}
		if f, err := a.Recv(ctx); err != nil || !bytes.Equal(f.Payload, full) {
			t.Fatalf("recv MTU-sized frame: %d bytes, %v", len(f.Payload), err)
		}
		if st := a.Stats(); st.FramesSent != 20 || st.FramesReceived != 1 || st.BytesReceived != uint64(b.MTU()) {
			t.Errorf("stats of a: %+v", st)
		}
	})
	t.Run("too large", func(t *testing.T) {
		a, _ := newPair(t)
		if err := a.Send(t.Context(), make([]byte, a.MTU()+1)); !errors.Is(err, lora.ErrTooLarge) {
			t.Errorf("send MTU+1: %v, want ErrTooLarge", err)
		}
	})
	t.Run("recv context", func(t *testing.T) {
		a, _ := newPair(t)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if _, err := a.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("recv with nothing sent: %v, want deadline exceeded", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		a, _ := newPair(t)
		done := make(chan error, 1)
		go func() {
			_, err := a.Recv(context.Background())
			done <- err
		}()
		if err := a.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; !errors.Is(err, lora.ErrClosed) {
			t.Errorf("pending recv after close: %v, want ErrClosed", err)
		}
		if err := a.Send(t.Context(), []byte("x")); !errors.Is(err, lora.ErrClosed) {
			t.Errorf("send after close: %v, want ErrClosed", err)
		}
		if _, err := a.Recv(t.Context()); !errors.Is(err, lora.ErrClosed) {
			t.Errorf("recv after close: %v, want ErrClosed", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		a, b := newPair(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		const n = 30
		errc := make(chan error, 2)
		go func() {
			for i := range n {
				if err := a.Send(ctx, fmt.Appendf(nil, "a%d", i)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		go func() {
			for i := range n {
				if err := b.Send(ctx, fmt.Appendf(nil, "b%d", i)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for _, l := range []lora.Link{a, b} {
			for range n {
				if _, err := l.Recv(ctx); err != nil {
					t.Fatal(err)
				}
				_ = l.Stats()
			}
		}
		for range 2 {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
	})
}
