package bundles

import bplog "github.com/backpack-field/backpack/log"

// Limits bound what Decode and DecodeReference accept. A zero field means
// its default. Every bound is checked while reading, so a hostile file is
// refused as soon as it crosses one, with an ErrTooLarge FormatError.
type Limits struct {
	// MaxCompressed bounds the bytes read from the input of Decode
	// (default 256 MiB). DecodeReference does not use it: its input is
	// bounded by MaxDecompressed.
	MaxCompressed int64
	// MaxDecompressed bounds the decompressed content (default 1 GiB). It
	// is what stops a zstd bomb.
	MaxDecompressed int64
	// MaxHeader bounds the header line (default 1 MiB).
	MaxHeader int
	// MaxLine bounds each event line (default log.MaxLineSize, 4 MiB).
	MaxLine int
	// MaxEvents bounds the number of events (default 10 million).
	MaxEvents int64
	// MaxFiles bounds the number of static files a full export carries in
	// its header's files member (default 64).
	MaxFiles int
	// MaxFileSize bounds each carried file's bytes (default 256 KiB). The
	// header line limit bounds them all together.
	MaxFileSize int
}

// Default limits.
const (
	DefaultMaxCompressed   = 256 << 20
	DefaultMaxDecompressed = 1 << 30
	DefaultMaxHeader       = 1 << 20
	DefaultMaxLine         = bplog.MaxLineSize
	DefaultMaxEvents       = 10_000_000
	DefaultMaxFiles        = 64
	DefaultMaxFileSize     = 256 << 10
)

// MaxWindow is the largest zstd window (and decoder memory for one frame)
// Decode allows. backpack's encoder uses at most 8 MiB.
const MaxWindow = 64 << 20

func (l Limits) withDefaults() Limits {
	if l.MaxCompressed <= 0 {
		l.MaxCompressed = DefaultMaxCompressed
	}
	if l.MaxDecompressed <= 0 {
		l.MaxDecompressed = DefaultMaxDecompressed
	}
	if l.MaxHeader <= 0 {
		l.MaxHeader = DefaultMaxHeader
	}
	if l.MaxLine <= 0 {
		l.MaxLine = DefaultMaxLine
	}
	if l.MaxEvents <= 0 {
		l.MaxEvents = DefaultMaxEvents
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	return l
}
