package canon

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Limits bound the parser. The zero value means the defaults.
type Limits struct {
	// MaxSize is the largest input accepted, in bytes (default 16 MiB).
	MaxSize int
	// MaxDepth is the deepest nesting of arrays and objects (default 256).
	MaxDepth int
	// MaxIntDigits is the longest integer token (default 4300, CPython's
	// int/str conversion limit, beyond which the reference raises).
	MaxIntDigits int
}

// Default limits.
const (
	DefaultMaxSize      = 16 << 20
	DefaultMaxDepth     = 256
	DefaultMaxIntDigits = 4300
)

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxIntDigits <= 0 {
		l.MaxIntDigits = DefaultMaxIntDigits
	}
	return l
}

// ErrTooLarge is returned (wrapped in a *SyntaxError) when input exceeds a
// size, depth or digit limit.
var ErrTooLarge = errors.New("canon: input exceeds limits")

// SyntaxError describes input the parser refused, with the byte offset.
type SyntaxError struct {
	Offset int    // byte offset into the input
	Msg    string // what was wrong
	Err    error  // ErrTooLarge for limit violations, else nil
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("canon: invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// Parse parses one JSON document with the default limits.
func Parse(data []byte) (Value, error) {
	return Limits{}.Parse(data)
}

// Parse parses one JSON document the way Python's json.loads does (strict
// mode): ASCII whitespace around tokens, NaN/Infinity/-Infinity literals,
// ints of any size kept exact, the last of duplicate keys winning. Unlike
// json.loads it also refuses what the reference could parse but never
// encode or hash: invalid UTF-8 and lone surrogate escapes.
func (l Limits) Parse(data []byte) (Value, error) {
	l = l.withDefaults()
	if len(data) > l.MaxSize {
		return Value{}, &SyntaxError{Offset: l.MaxSize, Msg: fmt.Sprintf("document larger than %d bytes", l.MaxSize), Err: ErrTooLarge}
	}
	p := parser{data: data, lim: l}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return Value{}, p.errf("extra data after the value")
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
	lim  Limits
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) literal(word string) bool {
	if len(p.data)-p.pos >= len(word) && string(p.data[p.pos:p.pos+len(word)]) == word {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *parser) value(depth int) (Value, error) {
	if p.pos >= len(p.data) {
		return Value{}, p.errf("unexpected end of input")
	}
	switch c := p.data[p.pos]; c {
	case '{':
		return p.object(depth + 1)
	case '[':
		return p.array(depth + 1)
	case '"':
		s, err := p.str()
		return Value{k: String, s: s}, err
	case 'n':
		if p.literal("null") {
			return Value{}, nil
		}
	case 't':
		if p.literal("true") {
			return Value{k: Bool, n: 1}, nil
		}
	case 'f':
		if p.literal("false") {
			return Value{k: Bool}, nil
		}
	case 'N':
		if p.literal("NaN") {
			return FloatValue(math.NaN()), nil
		}
	case 'I':
		if p.literal("Infinity") {
			return FloatValue(math.Inf(1)), nil
		}
	case '-':
		if p.literal("-Infinity") {
			return FloatValue(math.Inf(-1)), nil
		}
		return p.number()
	default:
		if c >= '0' && c <= '9' {
			return p.number()
		}
	}
	if p.pos < len(p.data) && p.data[p.pos] >= 0x80 {
		return Value{}, p.errf("unexpected non-ASCII byte 0x%02x", p.data[p.pos])
	}
	return Value{}, p.errf("expecting value, found %q", p.data[p.pos])
}

func (p *parser) object(depth int) (Value, error) {
	if depth > p.lim.MaxDepth {
		return Value{}, &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf("nesting deeper than %d", p.lim.MaxDepth), Err: ErrTooLarge}
	}
	p.pos++ // '{'
	p.skipSpace()
	var members []Member
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return Value{k: Object, c: []Member{}}, nil
	}
	sorted := true
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return Value{}, p.errf("expecting property name enclosed in double quotes")
		}
		key, err := p.key()
		if err != nil {
			return Value{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return Value{}, p.errf("expecting ':' delimiter")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		if n := len(members); n > 0 && members[n-1].Key >= key {
			sorted = false
		}
		members = append(members, Member{key, v})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errf("unexpected end of input in object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
			continue
		case '}':
			p.pos++
			if !sorted {
				members = sortMembers(members)
			}
			return Value{k: Object, c: members}, nil
		default:
			return Value{}, p.errf("expecting ',' delimiter")
		}
	}
}

func (p *parser) array(depth int) (Value, error) {
	if depth > p.lim.MaxDepth {
		return Value{}, &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf("nesting deeper than %d", p.lim.MaxDepth), Err: ErrTooLarge}
	}
	p.pos++ // '['
	p.skipSpace()
	elems := []Member{}
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return Value{k: Array, c: elems}, nil
	}
	for {
		v, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		elems = append(elems, Member{Value: v})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errf("unexpected end of input in array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			return Value{k: Array, c: elems}, nil
		default:
			return Value{}, p.errf("expecting ',' delimiter")
		}
	}
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? as CPython's
// scanner does: a '.' or 'e' not followed by digits ends the number there
// (and the leftover is then extra data).
func (p *parser) number() (Value, error) {
	d := p.data
	start := p.pos
	i := start
	if d[i] == '-' {
		i++
	}
	if i >= len(d) || d[i] < '0' || d[i] > '9' {
		return Value{}, p.errf("expecting value")
	}
	if d[i] == '0' {
		i++
	} else {
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	isFloat := false
	if i+1 < len(d) && d[i] == '.' && d[i+1] >= '0' && d[i+1] <= '9' {
		isFloat = true
		i += 2
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		j := i + 1
		if j < len(d) && (d[j] == '+' || d[j] == '-') {
			j++
		}
		if j < len(d) && d[j] >= '0' && d[j] <= '9' {
			isFloat = true
			for j < len(d) && d[j] >= '0' && d[j] <= '9' {
				j++
			}
			i = j
		}
	}
	text := d[start:i]
	if i-start > p.lim.MaxIntDigits+1 && !isFloat {
		return Value{}, &SyntaxError{Offset: start, Msg: fmt.Sprintf("integer longer than %d digits", p.lim.MaxIntDigits), Err: ErrTooLarge}
	}
	p.pos = i
	if isFloat {
		if len(text) > 1024 {
			return Value{}, &SyntaxError{Offset: start, Msg: "number token longer than 1024 bytes", Err: ErrTooLarge}
		}
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return Value{}, &SyntaxError{Offset: start, Msg: "bad number " + strconv.Quote(string(text))}
		}
		// On ErrRange ParseFloat returns ±Inf or the underflowed value,
		// as Python's float() does.
		return FloatValue(f), nil
	}
	if len(text) <= 18 {
		var n int64
		neg := text[0] == '-'
		t := text
		if neg {
			t = t[1:]
		}
		for _, c := range t {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return Value{k: Int, n: n}, nil
	}
	n, err := strconv.ParseInt(string(text), 10, 64)
	if err == nil {
		return Value{k: Int, n: n}, nil
	}
	// Beyond int64: keep the normalised decimal text. Leading zeros are
	// impossible here (the grammar allows only "0" to start with '0').
	return Value{k: Int, s: string(text)}, nil
}

// key parses an object key, returning a shared constant for the keys every
// event carries so that parsing a log does not allocate them again.
func (p *parser) key() (string, error) {
	// Fast path: a short key without escapes that is one of the envelope
	// names.
	d := p.data
	i := p.pos + 1
	for i < len(d) && i-p.pos < 20 && d[i] != '"' && d[i] != '\\' && d[i] >= 0x20 && d[i] < 0x80 {
		i++
	}
	if i < len(d) && d[i] == '"' {
		if k, ok := commonKeys[string(d[p.pos+1:i])]; ok {
			p.pos = i + 1
			return k, nil
		}
	}
	return p.str()
}

var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"event_id", "type", "namespace", "actor", "actor_key_id", "ts_logical",
		"prev_event_hash", "timestamp_utc", "payload", "sig", "subject",
		"predicate", "value", "confidence", "timestamp", "target_event_id",
		"path", "sha256", "size", "key_id",
	} {
		m[k] = k
	}
	return m
}()

// str parses a string token starting at the opening quote.
func (p *parser) str() (string, error) {
	d := p.data
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	i := start
	for i < len(d) {
		c := d[i]
		if c == '"' {
			s := string(d[start:i])
			if !utf8.ValidString(s) {
				return "", p.badUTF8(start, i)
			}
			p.pos = i + 1
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			p.pos = i
			return "", p.errf("invalid control character in string")
		}
		i++
	}
	// Slow path with escapes.
	buf := make([]byte, 0, i-start+16)
	buf = append(buf, d[start:i]...)
	for {
		if i >= len(d) {
			p.pos = i
			return "", p.errf("unterminated string")
		}
		c := d[i]
		switch {
		case c == '"':
			if !utf8.Valid(buf) {
				return "", p.badUTF8(start, i)
			}
			p.pos = i + 1
			return string(buf), nil
		case c < 0x20:
			p.pos = i
			return "", p.errf("invalid control character in string")
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		// Escape.
		if i+1 >= len(d) {
			p.pos = i
			return "", p.errf("unterminated string")
		}
		e := d[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(d, i)
			if !ok {
				p.pos = i - 2
				return "", p.errf("invalid \\uXXXX escape")
			}
			i += 4
			if r >= 0xD800 && r <= 0xDBFF {
				// A high surrogate must be followed by an escaped low one.
				if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
					if lo, ok := hex4(d, i+2); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
						i += 6
						buf = utf8.AppendRune(buf, r)
						continue
					}
				}
				p.pos = i - 6
				return "", p.errf("lone surrogate escape (cannot be encoded as UTF-8)")
			}
			if r >= 0xDC00 && r <= 0xDFFF {
				p.pos = i - 6
				return "", p.errf("lone surrogate escape (cannot be encoded as UTF-8)")
			}
			buf = utf8.AppendRune(buf, r)
		default:
			p.pos = i - 2
			return "", p.errf("invalid escape")
		}
	}
}

func (p *parser) badUTF8(start, end int) error {
	off := start
	b := p.data[start:end]
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			break
		}
		b = b[n:]
		off += n
	}
	p.pos = off
	return p.errf("invalid UTF-8 in string")
}

func hex4(d []byte, i int) (rune, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	var r rune
	for _, c := range d[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
