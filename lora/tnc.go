package lora

import (
	"context"
	"io"
	"sync"
)

// TNCOptions configures a TNC. The zero value is usable.
type TNCOptions struct {
	// MTU is the largest payload sent or accepted (default 255, one LoRa
	// packet).
	MTU int
	// Port is the KISS port (0-15) data frames are sent on and accepted
	// from (default 0).
	Port int
	// Params, when set, lets Stats report the airtime of sent frames.
	Params *Params
}

// TNC is a Link to a generic KISS TNC: each payload travels as one KISS
// data frame on the configured port. Frames on other ports and non-data
// commands from the TNC are ignored.
type TNC struct {
	p   *port
	mtu int
	cmd byte
	prm *Params
	in  chan Frame
	mu  sync.Mutex // mu guards st
	st  Stats
}

var _ Link = (*TNC)(nil)

// NewTNC starts a TNC link over rw, which it owns: Close closes it.
func NewTNC(rw io.ReadWriteCloser, opts TNCOptions) *TNC {
	if opts.MTU <= 0 {
		opts.MTU = MaxPHYPayload
	}
	t := &TNC{mtu: opts.MTU, cmd: byte(opts.Port&0x0F) << 4, in: make(chan Frame, recvBuffer)}
	if opts.Params != nil {
		prm := *opts.Params
		t.prm = &prm
	}
	t.p = startPort(rw, opts.MTU+1, t.handle, func(error) { t.count(func(s *Stats) { s.FramesDropped++ }) })
	return t
}

func (t *TNC) count(f func(*Stats)) {
	t.mu.Lock()
	f(&t.st)
	t.mu.Unlock()
}

// handle runs on the reader goroutine.
func (t *TNC) handle(cmd byte, data []byte) error {
	if cmd != t.cmd {
		return nil
	}
	f := Frame{Payload: append([]byte(nil), data...)}
	select {
	case t.in <- f: // counted when Recv hands it out
	default:
		t.count(func(s *Stats) { s.FramesDropped++ })
	}
	return nil
}

// MTU implements Link.
func (t *TNC) MTU() int { return t.mtu }

// Send implements Link.
func (t *TNC) Send(ctx context.Context, b []byte) error {
	if len(b) > t.mtu {
		return ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.p.write(t.cmd, b); err != nil {
		return err
	}
	t.count(func(s *Stats) {
		s.FramesSent++
		s.BytesSent += uint64(len(b))
		if t.prm != nil {
			s.Airtime += t.prm.Airtime(len(b))
		}
	})
	return nil
}

// Recv implements Link.
func (t *TNC) Recv(ctx context.Context) (Frame, error) {
	return recv(ctx, t.in, t.p, func(f Frame) {
		t.count(func(s *Stats) { s.FramesReceived++; s.BytesReceived += uint64(len(f.Payload)) })
	})
}

// recv takes the next frame from in; got counts it before it is returned,
// so that Stats covers every frame Recv handed out.
func recv(ctx context.Context, in chan Frame, p *port, got func(Frame)) (Frame, error) {
	if err := p.failed(); err == ErrClosed {
		return Frame{}, err
	}
	select {
	case f := <-in:
		got(f)
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	case <-p.done:
		select {
		case f := <-in:
			got(f)
			return f, nil
		default:
			return Frame{}, p.stopErr()
		}
	}
}

// Stats implements Link.
func (t *TNC) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

// Close implements Link.
func (t *TNC) Close() error { return t.p.close() }
