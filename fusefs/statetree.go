package fusefs

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

// namespaces are the reducer's namespaces, in the order state/ lists
// them.
var namespaces = []reducer.Namespace{reducer.Canonical, reducer.Local, reducer.Contested, reducer.Archived}

// stateTree is the state/ directory of the views one builder makes, kept
// between builds so that a view after the log grew re-encodes only the
// beliefs the new lines touch. Only the goroutine that builds views uses
// it.
type stateTree struct {
	dir *entry // state/ as the last view showed it; nil before the first
	gen uint64 // the log index generation dir was built from
	// files counts the belief files under each namespace directory.
	files [4]int
}

// beliefData is what a belief's file holds: the value (canonical and
// local namespaces) or the whole entry, as canonical JSON.
func beliefData(ns reducer.Namespace, val canon.Value) []byte {
	if ns == reducer.Canonical || ns == reducer.Local {
		val = val.Field("value")
	}
	data, err := canon.Encode(val)
	if err != nil {
		data = []byte(fmt.Sprintf("{\"error\": %q}", err.Error()))
	}
	return append(data, '\n')
}

// stateJSON returns state/state.json. It changes with every snapshot
// (the event count is in it), so its version follows the log.
func stateJSON(s *reducer.State, version uint64, now time.Time, log *slog.Logger) *entry {
	js, err := s.ExportJSON()
	if err != nil {
		// A state the reference cannot hash (SPEC: it raises) still has
		// beliefs worth showing; state.json says why it is missing.
		log.Warn("mount: state.json unavailable", "err", err)
		js = []byte(fmt.Sprintf("{\"error\": %q}", err.Error()))
	}
	return &entry{name: "state.json", data: append(js, '\n'), perm: permFile, mtime: now, version: version}
}

// update returns state/ for s. When g says which beliefs the lines added
// since the last build touch (and the log was not rewritten: gen is the
// same), only those are looked up and re-encoded; otherwise, or when the
// result does not add up to the state's counts, the directory is built
// from every belief. It reports whether it built from scratch.
func (t *stateTree) update(s *reducer.State, gen, version uint64, g *growth, now time.Time, log *slog.Logger) (dir *entry, full bool) {
	if t.dir != nil && t.gen == gen && g != nil && !g.opaque && s.Err() == nil {
		if d, ok := t.patch(s, g.keys, now); ok {
			t.dir = d.withChild("state.json", stateJSON(s, version, now, log))
			return t.dir, false
		}
		log.Debug("mount: incremental state update did not add up; building it whole")
	}
	t.build(s, now, log)
	t.dir = t.dir.withChild("state.json", stateJSON(s, version, now, log))
	t.gen = gen
	return t.dir, true
}

// build makes state/ from every belief of s.
func (t *stateTree) build(s *reducer.State, now time.Time, log *slog.Logger) {
	root := newTree("", permDir, now)
	root.mkdir(dirState)
	for i, ns := range namespaces {
		root.mkdir(dirState + "/" + ns.String())
		n := 0
		for key, val := range s.Entries(ns) {
			root.add(BeliefPath(ns.String(), key), fileEntry(beliefData(ns, val), now))
			n++
		}
		t.files[i] = n
	}
	t.dir = root.freeze().child(dirState)
}

// beliefs counts the belief files.
func (t *stateTree) beliefs() int {
	n := 0
	for _, c := range t.files {
		n += c
	}
	return n
}

// change is one file to put (e non-nil) or remove at a path below a
// directory.
type change struct {
	path []string
	e    *entry
}

// patch returns t.dir with the beliefs keys brought to what s holds, and
// false when the namespaces' sizes then differ from s's: a belief
// changed that the keys did not name.
func (t *stateTree) patch(s *reducer.State, keys map[string]bool, now time.Time) (*entry, bool) {
	files := t.files
	var changes []change
	for key := range keys {
		subject, predicate := splitKey(key)
		for i, ns := range namespaces {
			p := []string{ns.String(), EscapeName(subject), EscapeName(predicate)}
			old := t.dir.find(p)
			val, live := s.Entry(ns, key)
			switch {
			case live:
				data := beliefData(ns, val)
				if old != nil && !old.dir && bytes.Equal(old.data, data) {
					continue
				}
				if old == nil {
					files[i]++
				}
				changes = append(changes, change{p, fileEntry(data, now)})
			case old != nil:
				files[i]--
				changes = append(changes, change{p, nil})
			}
		}
	}
	for i, ns := range namespaces {
		if files[i] != s.Len(ns) {
			return nil, false
		}
	}
	t.files = files
	return applyChanges(t.dir, changes, now, 0), true
}

// find returns the entry at the path below e, or nil.
func (e *entry) find(p []string) *entry {
	for _, name := range p {
		if e == nil || !e.dir {
			return nil
		}
		e = e.child(name)
	}
	return e
}

// applyChanges returns a copy of the directory d with the changes made,
// sharing every subtree they do not touch. Directories the changes need
// are made (permDir, mtime now); directories below the namespaces
// (depth 1 and more: the subjects) that end up empty are removed, as a
// full build would not make them.
func applyChanges(d *entry, changes []change, now time.Time, depth int) *entry {
	if len(changes) == 0 {
		return d
	}
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].path[0] < changes[j].path[0] })
	out := *d
	out.children = slices.Clone(d.children)
	for i := 0; i < len(changes); {
		name := changes[i].path[0]
		j := i
		for j < len(changes) && changes[j].path[0] == name {
			j++
		}
		var next *entry
		if len(changes[j-1].path) == 1 {
			// A file: the last change to it wins.
			if e := changes[j-1].e; e != nil {
				e.name = name
				next = e
			}
		} else {
			sub := make([]change, 0, j-i)
			for _, c := range changes[i:j] {
				sub = append(sub, change{c.path[1:], c.e})
			}
			cur := d.child(name)
			if cur == nil || !cur.dir {
				cur = &entry{name: name, dir: true, perm: permDir, mtime: now}
			}
			next = applyChanges(cur, sub, now, depth+1)
			if depth >= 1 && len(next.children) == 0 {
				next = nil
			}
		}
		out.children = setChild(out.children, name, next)
		i = j
	}
	return &out
}

// setChild puts c under name in the sorted list (removes it when c is
// nil), in place.
func setChild(list []*entry, name string, c *entry) []*entry {
	k := sort.Search(len(list), func(k int) bool { return list[k].name >= name })
	found := k < len(list) && list[k].name == name
	switch {
	case c == nil && found:
		return slices.Delete(list, k, k+1)
	case c == nil:
		return list
	case found:
		list[k] = c
		return list
	}
	return slices.Insert(list, k, c)
}
