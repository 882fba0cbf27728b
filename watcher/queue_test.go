package watcher

import (
	"slices"
	"testing"
)

func TestQueue(t *testing.T) {
	q := newQueue()
	drain := func() []string {
		var out []string
		for {
			c, ok := q.peek()
			if !ok {
				return out
			}
			s := c.Path
			if c.Removed {
				s += "-"
			}
			if c.Size != 0 {
				s += "@" + string(rune('0'+c.Size))
			}
			out = append(out, s)
			q.pop()
		}
	}
	q.put(Change{Root: "r", Path: "a", Size: 1}, false)
	q.put(Change{Root: "r", Path: "b", Size: 1}, false)
	q.put(Change{Root: "r", Path: "a", Size: 2}, false)       // coalesced, keeps its place
	q.putRemoved(Change{Root: "r", Path: "b", Removed: true}) // never told: just dropped
	q.put(Change{Root: "r", Path: "c", Size: 1}, true)
	q.putRemoved(Change{Root: "r", Path: "c", Removed: true}) // told before: removal stays
	q.putRemoved(Change{Root: "r", Path: "d", Removed: true})
	q.put(Change{Root: "s", Path: "e", Size: 1}, false)
	q.put(Change{Root: "r", Path: "b", Size: 3}, false) // back after being dropped
	q.dropRoot("s")
	if got, want := drain(), []string{"a@2", "c-", "d-", "b@3"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if q.len() != 0 {
		t.Errorf("len %d after drain", q.len())
	}
	for i := range 5000 {
		q.put(Change{Path: string(rune(i + 'A'))}, false)
		q.peek()
		q.pop()
	}
	if len(q.order) > 1100 {
		t.Errorf("order not compacted: %d", len(q.order))
	}
}
