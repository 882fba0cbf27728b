package canon

import "unicode/utf8"

// Valid reports whether Parse accepts data, without building the value.
func Valid(data []byte) bool { return Limits{}.Valid(data) }

// Valid reports whether l.Parse accepts data. It does not allocate, so it
// suits checking large amounts of JSON that is only kept as bytes.
func (l Limits) Valid(data []byte) bool {
	l = l.withDefaults()
	if len(data) > l.MaxSize {
		return false
	}
	v := validator{data: data, lim: l}
	v.skipSpace()
	if !v.value(0) {
		return false
	}
	v.skipSpace()
	return v.pos == len(data)
}

// validator follows parser step by step, keeping nothing.
type validator struct {
	data []byte
	pos  int
	lim  Limits
}

func (v *validator) skipSpace() {
	for v.pos < len(v.data) {
		switch v.data[v.pos] {
		case ' ', '\t', '\n', '\r':
			v.pos++
		default:
			return
		}
	}
}

func (v *validator) literal(word string) bool {
	if len(v.data)-v.pos >= len(word) && string(v.data[v.pos:v.pos+len(word)]) == word {
		v.pos += len(word)
		return true
	}
	return false
}

func (v *validator) value(depth int) bool {
	if v.pos >= len(v.data) {
		return false
	}
	switch c := v.data[v.pos]; c {
	case '{', '[':
		return v.container(depth+1, c)
	case '"':
		return v.str()
	case 'n':
		return v.literal("null")
	case 't':
		return v.literal("true")
	case 'f':
		return v.literal("false")
	case 'N':
		return v.literal("NaN")
	case 'I':
		return v.literal("Infinity")
	case '-':
		if v.literal("-Infinity") {
			return true
		}
		return v.number()
	default:
		return c >= '0' && c <= '9' && v.number()
	}
}

// container checks an object (open '{') or an array (open '[').
func (v *validator) container(depth int, open byte) bool {
	if depth > v.lim.MaxDepth {
		return false
	}
	closer := byte(']')
	if open == '{' {
		closer = '}'
	}
	v.pos++
	v.skipSpace()
	if v.pos < len(v.data) && v.data[v.pos] == closer {
		v.pos++
		return true
	}
	for {
		if open == '{' {
			if v.pos >= len(v.data) || v.data[v.pos] != '"' || !v.str() {
				return false
			}
			v.skipSpace()
			if v.pos >= len(v.data) || v.data[v.pos] != ':' {
				return false
			}
			v.pos++
			v.skipSpace()
		}
		if !v.value(depth) {
			return false
		}
		v.skipSpace()
		if v.pos >= len(v.data) {
			return false
		}
		switch v.data[v.pos] {
		case ',':
			v.pos++
			v.skipSpace()
		case closer:
			v.pos++
			return true
		default:
			return false
		}
	}
}

// number mirrors parser.number, including its limits.
func (v *validator) number() bool {
	d := v.data
	start := v.pos
	i := start
	if d[i] == '-' {
		i++
	}
	if i >= len(d) || d[i] < '0' || d[i] > '9' {
		return false
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
	if !isFloat && i-start > v.lim.MaxIntDigits+1 {
		return false
	}
	if isFloat && i-start > 1024 {
		return false
	}
	v.pos = i
	return true
}

// str checks a string token starting at its opening quote: no raw control
// characters, valid UTF-8 between escapes (escapes always produce whole
// code points, so that is the same as the decoded string being valid),
// known escapes, and surrogate escapes only in high-low pairs.
func (v *validator) str() bool {
	d := v.data
	i := v.pos + 1
	start := i
	for {
		if i >= len(d) {
			return false
		}
		c := d[i]
		switch {
		case c == '"':
			if !utf8.Valid(d[start:i]) {
				return false
			}
			v.pos = i + 1
			return true
		case c < 0x20:
			return false
		case c != '\\':
			i++
			continue
		}
		if !utf8.Valid(d[start:i]) || i+1 >= len(d) {
			return false
		}
		e := d[i+1]
		i += 2
		switch e {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			r, ok := hex4(d, i)
			if !ok {
				return false
			}
			i += 4
			if r >= 0xD800 && r <= 0xDBFF {
				if i+1 >= len(d) || d[i] != '\\' || d[i+1] != 'u' {
					return false
				}
				lo, ok := hex4(d, i+2)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return false
				}
				i += 6
			} else if r >= 0xDC00 && r <= 0xDFFF {
				return false
			}
		default:
			return false
		}
		start = i
	}
}
