package lora

import (
	"context"
	"errors"
	"time"
)

// Link sends and receives frames over one radio (or a simulation of one).
//
// Delivery is best effort: a sent frame may reach no one, reach a peer
// twice or arrive after a later frame. A Link does not fragment: Send
// refuses a payload longer than MTU with ErrTooLarge.
//
// Send blocks until the frame has been handed to the device (or, for a
// simulated link, until its airtime has passed); its context is checked
// before the frame is handed over, and a device write that has started is
// not interrupted. Recv blocks until a frame arrives, ctx is done, or the
// link is closed or fails: it returns ctx.Err(), ErrClosed after Close, or
// an error matching ErrDisconnected when the device went away. Frames that
// arrive while nobody calls Recv are buffered up to a bound; beyond it they
// are dropped and counted in Stats.FramesDropped.
//
// All methods are safe for concurrent use. Close stops the link, closes
// the underlying device or port, and waits for the link's goroutines; it
// may be called more than once.
type Link interface {
	// MTU is the largest payload Send accepts, in bytes.
	MTU() int
	// Send transmits one frame. The link does not retain p.
	Send(ctx context.Context, p []byte) error
	// Recv returns the next received frame. The caller owns its Payload.
	Recv(ctx context.Context) (Frame, error)
	// Stats returns a snapshot of the link's counters.
	Stats() Stats
	// Close shuts the link down.
	Close() error
}

// Frame is one received frame.
type Frame struct {
	Payload []byte
	// HasSignal reports whether RSSI and SNR are known (an RNode reports
	// them for every packet; a generic TNC does not).
	HasSignal bool
	RSSI      int     // received signal strength, dBm
	SNR       float64 // signal-to-noise ratio, dB
}

// Stats counts what a link did since it was opened.
type Stats struct {
	FramesSent     uint64
	FramesReceived uint64
	BytesSent      uint64 // payload bytes
	BytesReceived  uint64 // payload bytes
	// FramesDropped counts frames that arrived but were discarded: the
	// receive buffer was full, or the bytes did not decode.
	FramesDropped uint64
	// FramesLost counts frames lost on the air on their way to this link
	// (known only to a simulated link).
	FramesLost uint64
	// Airtime is the time on air of the frames sent, computed from the
	// radio parameters when they are known.
	Airtime time.Duration
	// DutyWait is the time Send spent waiting for the duty-cycle budget.
	DutyWait time.Duration
}

var (
	// ErrClosed is returned by a Link's methods after Close.
	ErrClosed = errors.New("lora: link closed")
	// ErrTooLarge is returned by Send for a payload longer than the MTU.
	ErrTooLarge = errors.New("lora: frame larger than the link MTU")
	// ErrDisconnected matches the error a Link returns once its device
	// went away (a serial port unplugged, the stream closed by the other
	// end).
	ErrDisconnected = errors.New("lora: device disconnected")
)

// recvBuffer is how many received frames a link holds for Recv.
const recvBuffer = 256
