package lora_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
)

func TestTNC(t *testing.T) {
	testLink(t, func(t *testing.T) (lora.Link, lora.Link) {
		c1, c2 := net.Pipe()
		a, b := lora.NewTNC(c1, lora.TNCOptions{}), lora.NewTNC(c2, lora.TNCOptions{})
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	})
}

// TestTNCWire checks the bytes a TNC writes and that it ignores frames for
// other ports, other commands and garbage.
func TestTNCWire(t *testing.T) {
	host, dev := net.Pipe()
	p := lora.Params{SpreadingFactor: 9, Bandwidth: 125000, CodingRate: 5}
	l := lora.NewTNC(host, lora.TNCOptions{Port: 2, Params: &p})
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- l.Send(ctx, []byte{0xC0}) }()
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(dev, buf, 5)
	if err != nil || !bytes.Equal(buf[:n], []byte{0xC0, 0x20, 0xDB, 0xDC, 0xC0}) {
		t.Fatalf("wire = % x, %v", buf[:n], err)
	}
	// Send counts the frame and its airtime once its write returned.
	if err := <-sent; err != nil {
		t.Fatalf("send: %v", err)
	}
	var in []byte
	in = append(in, "line noise"...)
	in = lora.AppendFrame(in, 0x00, []byte("port 0"))
	in = lora.AppendFrame(in, 0x21, []byte("txdelay on port 2"))
	in = append(in, 0xC0, 0x20, 0xDB, 0x00, 0xC0) // bad escape
	in = lora.AppendFrame(in, 0x20, []byte("mine"))
	go dev.Write(in)
	f, err := l.Recv(ctx)
	if err != nil || string(f.Payload) != "mine" || f.HasSignal {
		t.Fatalf("recv = %q %v", f.Payload, err)
	}
	st := l.Stats()
	if st.FramesReceived != 1 || st.FramesDropped != 1 || st.Airtime != p.Airtime(1) {
		t.Errorf("stats %+v", st)
	}
	dev.Close()
	if _, err := l.Recv(ctx); !errors.Is(err, lora.ErrDisconnected) {
		t.Errorf("recv after the device went away: %v, want ErrDisconnected", err)
	}
	if err := l.Send(ctx, []byte("x")); !errors.Is(err, lora.ErrDisconnected) {
		t.Errorf("send after the device went away: %v, want ErrDisconnected", err)
	}
}
