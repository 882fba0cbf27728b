package radiosync

// Frame layout (docs/FORMAT.md, "Radio sync").
const (
	headerSize = 10 // type, src hint, dst hint, 40-bit counter
	tagSize    = 8  // truncated HMAC-SHA256
	dataExtra  = 3  // transfer id, fragment index, fragment count
	// DataOverhead is what a DATA frame adds to the batch bytes it
	// carries.
	DataOverhead = headerSize + dataExtra + tagSize
)
