// Package canon owns backpack's JSON: a value model that keeps what the
// Provara reference's Python keeps apart, a bounded parser that accepts what
// Python's json.loads accepts (and refuses what the reference cannot hash),
// and the canonical encoder that reproduces the reference's
// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
// byte for byte (SPEC.md §4).
//
// The model matters because the canonical bytes depend on parsed types: an
// integer token is an arbitrary-precision integer ("1" stays "1"), a token
// with a fraction or exponent is a float64 printed the way Python's
// float.__repr__ prints it ("1e2" becomes "100.0"). Objects hold their
// members sorted by key in code-point order with the last duplicate winning,
// so encoding never sorts and equal objects share one representation.
//
// No other package in backpack knows the encoding rules.
package canon

import (
	"math"
	"math/big"
	"strconv"
)

// Kind is the type of a JSON value as Python's json module sees it.
type Kind uint8

// The kinds of Value. Int and Float are distinct, as in Python.
const (
	Null Kind = iota
	Bool
	Int
	Float
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "bool"
	case Int:
		return "int"
	case Float:
		return "float"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is an immutable JSON value. The zero Value is null.
//
// Values are small and passed by value; the slices they hold are shared and
// must not be modified after construction.
type Value struct {
	k Kind
	// n holds a bool (0/1), an int that fits in int64, or a float's bits.
	n int64
	// s holds a string, or the decimal text of an int outside int64.
	s string
	// c holds array elements (Key unused) or object members sorted by Key.
	c []Member
}

// Member is one object member, or one array element with an empty Key.
type Member struct {
	Key   string
	Value Value
}

// NullValue returns JSON null.
func NullValue() Value { return Value{} }

// BoolValue returns true or false.
func BoolValue(b bool) Value {
	v := Value{k: Bool}
	if b {
		v.n = 1
	}
	return v
}

// IntValue returns an integer.
func IntValue(i int64) Value { return Value{k: Int, n: i} }

// BigIntValue returns an integer of any size.
func BigIntValue(i *big.Int) Value {
	if i.IsInt64() {
		return IntValue(i.Int64())
	}
	return Value{k: Int, s: i.String()}
}

// FloatValue returns a float. Non-finite floats are representable (the
// reference parses NaN and Infinity) but cannot be encoded.
func FloatValue(f float64) Value { return Value{k: Float, n: int64(math.Float64bits(f))} }

// StringValue returns a string. s must be valid UTF-8 for Encode to succeed.
func StringValue(s string) Value { return Value{k: String, s: s} }

// ArrayValue returns an array holding elems (not copied).
func ArrayValue(elems ...Value) Value {
	c := make([]Member, len(elems))
	for i, e := range elems {
		c[i].Value = e
	}
	return Value{k: Array, c: c}
}

// Kind reports the value's kind.
func (v Value) Kind() Kind { return v.k }

// IsNull reports whether v is JSON null.
func (v Value) IsNull() bool { return v.k == Null }

// Bool returns the value of a Bool (false for other kinds).
func (v Value) Bool() bool { return v.k == Bool && v.n != 0 }

// Int64 returns an Int's value and whether it fits in int64.
func (v Value) Int64() (int64, bool) {
	if v.k != Int || v.s != "" {
		return 0, false
	}
	return v.n, true
}

// BigInt returns an Int's value as a new big.Int (nil for other kinds).
func (v Value) BigInt() *big.Int {
	if v.k != Int {
		return nil
	}
	if v.s == "" {
		return big.NewInt(v.n)
	}
	b, ok := new(big.Int).SetString(v.s, 10)
	if !ok {
		panic("bug: canon: malformed big int " + v.s)
	}
	return b
}

// Float returns a Float's value (0 for other kinds).
func (v Value) Float() float64 {
	if v.k != Float {
		return 0
	}
	return math.Float64frombits(uint64(v.n))
}

// Str returns a String's value ("" for other kinds).
func (v Value) Str() string {
	if v.k != String {
		return ""
	}
	return v.s
}

// Len returns the number of elements of an Array or members of an Object.
func (v Value) Len() int { return len(v.c) }

// Index returns element i of an Array.
func (v Value) Index(i int) Value { return v.c[i].Value }

// Members returns an Object's members in canonical (code-point) key order.
// The slice is shared: do not modify it.
func (v Value) Members() []Member {
	if v.k != Object {
		return nil
	}
	return v.sorted()
}

// Elems returns an Array's elements. It allocates.
func (v Value) Elems() []Value {
	if v.k != Array {
		return nil
	}
	out := make([]Value, len(v.c))
	for i, m := range v.c {
		out[i] = m.Value
	}
	return out
}

// Get returns the member named key of an Object.
func (v Value) Get(key string) (Value, bool) {
	if v.k != Object {
		return Value{}, false
	}
	if v.ordered() {
		for _, m := range v.c {
			if m.Key == key {
				return m.Value, true
			}
		}
		return Value{}, false
	}
	c := v.c
	// Binary search: members are sorted by key.
	lo, hi := 0, len(c)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c[m].Key < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(c) && c[lo].Key == key {
		return c[lo].Value, true
	}
	return Value{}, false
}

// Field returns the member named key, or null when it is absent or v is not
// an Object. Python's dict.get, for code that mirrors the reference.
func (v Value) Field(key string) Value {
	f, _ := v.Get(key)
	return f
}

// Has reports whether an Object has a member named key.
func (v Value) Has(key string) bool {
	_, ok := v.Get(key)
	return ok
}

// Without returns a copy of an Object without the named members. It
// shares the member values.
func (v Value) Without(keys ...string) Value {
	if v.k != Object {
		return v
	}
	out := make([]Member, 0, len(v.c))
outer:
	for _, m := range v.sorted() {
		for _, k := range keys {
			if m.Key == k {
				continue outer
			}
		}
		out = append(out, m)
	}
	return Value{k: Object, c: out}
}

// With returns a copy of an Object with member key set to val (replacing an
// existing member of that name).
func (v Value) With(key string, val Value) Value {
	if v.k != Object {
		panic("bug: canon: With on " + v.k.String())
	}
	out := make([]Member, 0, len(v.c)+1)
	done := false
	for _, m := range v.sorted() {
		if !done && key <= m.Key {
			out = append(out, Member{key, val})
			done = true
			if m.Key == key {
				continue
			}
		}
		out = append(out, m)
	}
	if !done {
		out = append(out, Member{key, val})
	}
	return Value{k: Object, c: out}
}

// ObjectBuilder builds an Object. Set may be called in any order; a later
// Set of the same key replaces the earlier value, as in Python.
type ObjectBuilder struct {
	m []Member
}

// Set sets member key to v.
func (b *ObjectBuilder) Set(key string, v Value) *ObjectBuilder {
	b.m = append(b.m, Member{key, v})
	return b
}

// Value returns the Object. The builder must not be used afterwards.
func (b *ObjectBuilder) Value() Value {
	return Value{k: Object, c: sortMembers(b.m)}
}

// ObjectValue returns an Object from members given in any order; the last
// duplicate key wins. The slice is sorted in place and kept.
func ObjectValue(members ...Member) Value {
	return Value{k: Object, c: sortMembers(members)}
}

// sortMembers sorts by key (stable) and keeps the last of each duplicate.
func sortMembers(m []Member) []Member {
	// Objects are small; insertion sort is stable and fast for them.
	if len(m) > 32 {
		sortMembersLarge(m)
	} else {
		for i := 1; i < len(m); i++ {
			for j := i; j > 0 && m[j].Key < m[j-1].Key; j-- {
				m[j], m[j-1] = m[j-1], m[j]
			}
		}
	}
	// Remove duplicates, keeping the last (stable sort keeps input order
	// among equal keys).
	w := 0
	for i := range m {
		if i+1 < len(m) && m[i+1].Key == m[i].Key {
			continue
		}
		m[w] = m[i]
		w++
	}
	return m[:w]
}
