package lora

import (
	"errors"
	"fmt"
	"io"
)

// KISS special bytes.
const (
	FEND  = 0xC0 // frame delimiter
	FESC  = 0xDB // escape
	TFEND = 0xDC // FESC TFEND stands for a FEND data byte
	TFESC = 0xDD // FESC TFESC stands for a FESC data byte
)

// KISS command codes of a generic TNC (low nibble of the command byte).
const (
	KISSData        = 0x00
	KISSTXDelay     = 0x01
	KISSPersistence = 0x02
	KISSSlotTime    = 0x03
	KISSTXTail      = 0x04
	KISSFullDuplex  = 0x05
	KISSSetHardware = 0x06
	KISSReturn      = 0xFF
)

// DefaultMaxFrame is the data limit a Decoder uses when given none: twice
// RNode's host MTU, enough for every frame a LoRa device sends.
const DefaultMaxFrame = 1024

var (
	// ErrFrameTooLong matches a frame whose data exceeds the decoder's limit.
	ErrFrameTooLong = errors.New("lora: kiss frame too long")
	// ErrBadEscape matches a FESC followed by anything but TFEND or TFESC.
	ErrBadEscape = errors.New("lora: kiss bad escape")
)

// FrameError reports a frame the decoder dropped. Offset is the position in
// the stream of the byte that broke it. Decoding continues at the next FEND.
type FrameError struct {
	Offset int64
	Err    error // ErrFrameTooLong or ErrBadEscape
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("%v at stream offset %d", e.Err, e.Offset)
}

func (e *FrameError) Unwrap() error { return e.Err }

// AppendFrame appends a complete KISS frame, FEND cmd data FEND, with cmd
// and data escaped, to dst and returns the extended slice.
func AppendFrame(dst []byte, cmd byte, data []byte) []byte {
	dst = append(dst, FEND)
	dst = appendEscaped(dst, cmd)
	for _, c := range data {
		dst = appendEscaped(dst, c)
	}
	return append(dst, FEND)
}

func appendEscaped(dst []byte, c byte) []byte {
	switch c {
	case FEND:
		return append(dst, FESC, TFEND)
	case FESC:
		return append(dst, FESC, TFESC)
	}
	return append(dst, c)
}

// Decoder reads KISS frames from a byte stream. Bytes outside a frame are
// ignored, back-to-back FENDs are not frames, and a frame that is too long
// or badly escaped is dropped with a *FrameError, after which Next may be
// called again: decoding resumes at the next FEND. Memory stays within
// the limit plus a fixed read buffer whatever the stream holds.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r      io.Reader
	max    int
	rbuf   []byte
	rpos   int
	rend   int
	off    int64 // stream offset of rbuf[rend]
	frame  []byte
	rerr   error
	inside bool // a FEND was seen and the frame is still open
	skip   bool // discard until the next FEND (after an error)
	esc    bool
}

// NewDecoder returns a decoder that reads from r and accepts frames of at
// most maxFrame bytes (command byte included); maxFrame <= 0 means
// DefaultMaxFrame.
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Decoder{r: r, max: maxFrame, rbuf: make([]byte, 4096), frame: make([]byte, 0, min(maxFrame, 4096))}
}

// Next returns the next frame's command byte and data. The data is valid
// until the following call to Next. At the end of the stream it returns
// io.EOF, or io.ErrUnexpectedEOF if a frame was cut off; a read error is
// returned as is. A *FrameError reports a dropped frame.
func (d *Decoder) Next() (cmd byte, data []byte, err error) {
	for {
		if d.rpos == d.rend {
			if d.rerr != nil {
				err := d.rerr
				if err == io.EOF && d.inside && len(d.frame) > 0 && !d.skip {
					err = io.ErrUnexpectedEOF
				}
				d.inside, d.skip, d.esc = false, false, false
				d.frame = d.frame[:0]
				return 0, nil, err
			}
			n, err := d.r.Read(d.rbuf)
			if n < 0 || n > len(d.rbuf) {
				n = 0
			}
			d.rpos, d.rend = 0, n
			d.off += int64(n)
			d.rerr = err
			continue
		}
		c := d.rbuf[d.rpos]
		d.rpos++
		if c == FEND {
			bad := d.esc && !d.skip
			complete := d.inside && !d.skip && len(d.frame) > 0
			d.inside, d.skip, d.esc = true, false, false
			if bad {
				d.frame = d.frame[:0]
				return 0, nil, &FrameError{Offset: d.offset(), Err: ErrBadEscape}
			}
			if complete {
				f := d.frame
				d.frame = d.frame[:0]
				return f[0], f[1:], nil
			}
			d.frame = d.frame[:0]
			continue
		}
		if !d.inside || d.skip {
			continue
		}
		if d.esc {
			d.esc = false
			switch c {
			case TFEND:
				c = FEND
			case TFESC:
				c = FESC
			default:
				return 0, nil, d.drop(ErrBadEscape)
			}
		} else if c == FESC {
			d.esc = true
			continue
		}
		if len(d.frame) >= d.max {
			return 0, nil, d.drop(ErrFrameTooLong)
		}
		d.frame = append(d.frame, c)
	}
}

// offset is the stream offset of the byte last consumed.
func (d *Decoder) offset() int64 {
	return d.off - int64(d.rend-d.rpos) - 1
}

func (d *Decoder) drop(err error) error {
	d.skip = true
	d.esc = false
	d.frame = d.frame[:0]
	return &FrameError{Offset: d.offset(), Err: err}
}
