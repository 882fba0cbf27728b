package lora

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// port is the KISS byte stream under a TNC or an RNode: one goroutine
// decodes frames and hands them to handle, writers share a mutex.
type port struct {
	rw     io.ReadWriteCloser
	handle func(cmd byte, data []byte) error // reader goroutine only; an error stops it
	bad    func(err error)                   // a dropped frame; reader goroutine only

	done chan struct{} // closed when the reader goroutine has returned

	wmu  sync.Mutex // wmu guards wbuf and serialises writes
	wbuf []byte

	mu     sync.Mutex // mu guards the fields below
	closed bool
	err    error // why the reader stopped; set before done is closed
}

func startPort(rw io.ReadWriteCloser, maxFrame int, handle func(byte, []byte) error, bad func(error)) *port {
	p := &port{rw: rw, handle: handle, bad: bad, done: make(chan struct{})}
	go p.read(NewDecoder(rw, maxFrame))
	return p
}

// read is the reader goroutine; Close waits for it.
func (p *port) read(dec *Decoder) {
	defer close(p.done)
	for {
		cmd, data, err := dec.Next()
		if err == nil {
			if herr := p.handle(cmd, data); herr != nil {
				p.mu.Lock()
				p.err = herr
				p.mu.Unlock()
				return
			}
			continue
		}
		if _, ok := errors.AsType[*FrameError](err); ok {
			p.bad(err)
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.err = ErrClosed
		} else {
			p.err = fmt.Errorf("%w: %w", ErrDisconnected, err)
		}
		p.mu.Unlock()
		return
	}
}

// write sends one frame.
func (p *port) write(cmd byte, data []byte) error {
	if err := p.failed(); err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.wbuf = AppendFrame(p.wbuf[:0], cmd, data)
	return p.writeLocked(p.wbuf)
}

// writeRaw sends bytes already framed.
func (p *port) writeRaw(b []byte) error {
	if err := p.failed(); err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.writeLocked(b)
}

func (p *port) writeLocked(b []byte) error {
	if _, err := p.rw.Write(b); err != nil {
		if ferr := p.failed(); ferr != nil {
			return ferr
		}
		return fmt.Errorf("%w: write: %w", ErrDisconnected, err)
	}
	return nil
}

// failed returns ErrClosed after close, the reader's error once it has
// stopped, and nil while the port works.
func (p *port) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// stopErr returns why the reader stopped; call only after done is closed.
func (p *port) stopErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return p.err
}

// close closes the stream and waits for the reader.
func (p *port) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.rw.Close()
	<-p.done
	return err
}
