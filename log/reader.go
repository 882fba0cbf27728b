package log

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Reasons a line cannot be used, reported by Reader (LineError.Err).
var (
	ErrLineTooLong = fmt.Errorf("log: line longer than %d bytes", MaxLineSize)
	ErrInvalidUTF8 = errors.New("log: line is not valid UTF-8")
)

// Line is one non-blank line of events.ndjson.
type Line struct {
	Number     int    // 1-based, counting lines as Python's universal newlines do
	Offset     int64  // byte offset of the line's first byte
	End        int64  // byte offset just after its terminator (or EOF)
	Text       []byte // the line with Python str.strip() whitespace removed; valid until the next Next
	Terminated bool   // false for a last line without a line break (torn or hand-made)
	Err        error  // non-nil when the line cannot be used (ErrLineTooLong, ErrInvalidUTF8)
}

// Reader reads events.ndjson line by line the way the reference does:
// lines end at "\n", "\r\n" or a lone "\r"; each line is stripped of
// Python whitespace (which includes U+001C..U+001F and Unicode spaces);
// blank lines are skipped. Unlike the reference it never aborts on invalid
// UTF-8 and never skips silently: every non-blank line is returned, with
// Err set when it cannot be used. Parsing the JSON is left to the caller
// (ParseLine), so that it can happen in parallel.
type Reader struct {
	r      io.Reader
	buf    []byte
	pos    int   // start of unread data in buf
	end    int   // end of data in buf
	off    int64 // file offset of buf[pos]
	eof    bool
	err    error
	number int
	line   Line
	long   []byte // reused for the too-long case
}

// NewReader returns a Reader over r, which is positioned at file offset 0.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 1<<20)}
}

// NewReaderAt returns a Reader whose first byte is at file offset off and
// whose first line is numbered firstLine (for reading a log's tail).
func NewReaderAt(r io.Reader, off int64, firstLine int) *Reader {
	rd := NewReader(r)
	rd.off = off
	rd.number = firstLine - 1
	return rd
}

// Err returns the first I/O error, if any.
func (r *Reader) Err() error { return r.err }

// Line returns the current line.
func (r *Reader) Line() *Line { return &r.line }

// fill reads more data, compacting the buffer; it reports whether any was
// read.
func (r *Reader) fill() bool {
	if r.eof || r.err != nil {
		return false
	}
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:r.end])
		r.end = n
		r.pos = 0
	}
	if r.end == len(r.buf) {
		if len(r.buf) >= MaxLineSize+2 {
			return false
		}
		nb := make([]byte, min(2*len(r.buf), MaxLineSize+2))
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	if err == io.EOF {
		r.eof = true
	} else if err != nil {
		r.err = err
	}
	return n > 0 || (!r.eof && r.err == nil)
}

// Next advances to the next non-blank line.
func (r *Reader) Next() bool {
	for {
		ok, blank := r.next()
		if !ok {
			return false
		}
		if !blank {
			return true
		}
	}
}

// next reads one line; blank reports a line that strips to nothing.
func (r *Reader) next() (ok, blank bool) {
	scanned := 0 // bytes of buf[pos:] already known to hold no terminator
	for {
		seg := r.buf[r.pos+scanned : r.end]
		i := bytes.IndexByte(seg, '\n')
		if i < 0 {
			i = len(seg)
		}
		if j := bytes.IndexByte(seg[:i], '\r'); j >= 0 {
			i = j
		}
		if i < len(seg) {
			t := r.pos + scanned + i // terminator index
			termLen := 1
			if r.buf[t] == '\r' {
				if t+1 >= r.end && !r.eof && r.err == nil {
					// Need one more byte to tell \r from \r\n.
					scanned += i
					have := r.end - r.pos
					r.fill()
					if r.end-r.pos > have {
						continue
					}
					t = r.pos + scanned // no progress (buffer full): a lone \r
				}
				if t+1 < r.end && r.buf[t+1] == '\n' {
					termLen = 2
				}
			}
			return true, r.emit(r.buf[r.pos:t], t+termLen-r.pos, true)
		}
		// No terminator in what we have.
		scanned = r.end - r.pos
		if r.end-r.pos > MaxLineSize {
			return true, r.skipLong()
		}
		if !r.fill() {
			if r.end == r.pos {
				return false, false
			}
			if r.end-r.pos > MaxLineSize {
				return true, r.skipLong()
			}
			// Last line without a terminator.
			return true, r.emit(r.buf[r.pos:r.end], r.end-r.pos, false)
		}
		scanned = min(scanned, r.end-r.pos)
	}
}

// emit sets r.line from raw (the line without terminator) and consumes
// consumed bytes.
func (r *Reader) emit(raw []byte, consumed int, terminated bool) (blank bool) {
	r.number++
	text := stripPy(raw)
	r.line = Line{
		Number:     r.number,
		Offset:     r.off,
		End:        r.off + int64(consumed),
		Text:       text,
		Terminated: terminated,
	}
	r.pos += consumed
	r.off += int64(consumed)
	if len(text) == 0 {
		return true
	}
	if !utf8.Valid(text) {
		r.line.Err = ErrInvalidUTF8
	}
	return false
}

// skipLong consumes a line longer than MaxLineSize without keeping it.
func (r *Reader) skipLong() bool {
	r.number++
	start := r.off
	for {
		seg := r.buf[r.pos:r.end]
		i := bytes.IndexAny(seg, "\r\n")
		if i >= 0 {
			n := i + 1
			if seg[i] == '\r' && i+1 < len(seg) && seg[i+1] == '\n' {
				n++
			}
			r.pos += n
			r.off += int64(n)
			r.line = Line{Number: r.number, Offset: start, End: r.off, Terminated: true, Err: ErrLineTooLong}
			return false
		}
		r.off += int64(len(seg))
		r.pos = r.end
		if !r.fill() {
			r.line = Line{Number: r.number, Offset: start, End: r.off, Err: ErrLineTooLong}
			return false
		}
	}
}

// stripPy removes leading and trailing characters for which Python's
// str.isspace() is true.
func stripPy(b []byte) []byte {
	for len(b) > 0 {
		if c := b[0]; c < utf8.RuneSelf {
			if !asciiSpace(c) {
				break
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if !unicodeSpace(r) {
			break
		}
		b = b[n:]
	}
	for len(b) > 0 {
		if c := b[len(b)-1]; c < utf8.RuneSelf {
			if !asciiSpace(c) {
				break
			}
			b = b[:len(b)-1]
			continue
		}
		r, n := utf8.DecodeLastRune(b)
		if !unicodeSpace(r) {
			break
		}
		b = b[:len(b)-n]
	}
	return b
}

func asciiSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)
}

func unicodeSpace(r rune) bool {
	switch r {
	case 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}
