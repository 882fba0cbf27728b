package canon

import "slices"

// OrderedObject returns an Object that remembers the order of its members,
// for human-facing files that the reference writes with
// json.dumps(indent=2) in insertion order (identity/*.json, policies,
// manifest.sig). Canonical encoding still sorts its keys. Keys must be
// distinct.
func OrderedObject(members ...Member) Value {
	return Value{k: Object, n: 1, c: members}
}

// ordered reports whether v is an OrderedObject.
func (v Value) ordered() bool { return v.k == Object && v.n == 1 }

// sorted returns v's members in canonical order.
func (v Value) sorted() []Member {
	if !v.ordered() {
		return v.c
	}
	return sortMembers(slices.Clone(v.c))
}

// AppendIndent appends v the way Python's json.dumps(v, indent=2,
// ensure_ascii=False) writes it: two-space indentation, ": " after keys,
// "[]" and "{}" for empty containers, members in the value's own order
// (insertion order for OrderedObject, key order otherwise), strings and
// numbers as in canonical JSON. No trailing newline.
func AppendIndent(dst []byte, v Value) ([]byte, error) {
	return appendIndent(dst, v, 0)
}

func appendIndent(dst []byte, v Value, depth int) ([]byte, error) {
	if (v.k != Array && v.k != Object) || len(v.c) == 0 {
		if v.k == Object {
			return append(dst, "{}"...), nil
		}
		if v.k == Array {
			return append(dst, "[]"...), nil
		}
		return AppendEncode(dst, v)
	}
	open, close := byte('['), byte(']')
	if v.k == Object {
		open, close = '{', '}'
	}
	dst = append(dst, open)
	var err error
	for i, m := range v.c {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = newlineIndent(dst, depth+1)
		if v.k == Object {
			if dst, err = AppendString(dst, m.Key); err != nil {
				return dst, err
			}
			dst = append(dst, ':', ' ')
		}
		if dst, err = appendIndent(dst, m.Value, depth+1); err != nil {
			return dst, err
		}
	}
	dst = newlineIndent(dst, depth)
	return append(dst, close), nil
}

func newlineIndent(dst []byte, depth int) []byte {
	dst = append(dst, '\n')
	for range depth {
		dst = append(dst, ' ', ' ')
	}
	return dst
}
