package agent

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// ownLog follows the backpack's events.ndjson between passes, to check
// lines other programs append (`provara append`, `cat >>`) before the
// store absorbs them. Only touched by the agent's loop goroutine.
type ownLog struct {
	path  string
	size  int64    // bytes seen (ends at a line end)
	tail  [32]byte // SHA-256 of the store.TailWindow bytes before size
	lines int
	heads map[string]string // actor -> last event id in file order
	reg   *bplog.Registry
}

// logProblem is one problem found in lines another program wrote.
type logProblem struct {
	Offset  int64
	Message string
}

// reset takes the store's view after a pass as the new baseline.
func (o *ownLog) reset(b *store.Backpack) error {
	snap := b.Snapshot()
	o.size = snap.LogSize
	o.heads = map[string]string{}
	for a, h := range snap.Heads {
		o.heads[a] = h.ID
	}
	o.reg = b.Registry()
	t, err := o.tailHash(o.size)
	o.tail = t
	return err
}

func (o *ownLog) tailHash(size int64) ([32]byte, error) {
	id, err := store.FileTail(o.path, size)
	return id.Tail, err
}

// check looks at the log as it is now. It returns whether it changed
// since the baseline, and the problems with what changed. Lines it
// checked become part of the baseline, so each problem is reported once.
func (o *ownLog) check() (changed bool, problems []logProblem, err error) {
	if o.reg == nil {
		return false, nil, nil // no baseline yet: the first pass sets it
	}
	st, err := os.Stat(o.path)
	if err != nil {
		return false, nil, err
	}
	size := st.Size()
	// A rewrite (shorter, or bytes already seen changed) is not judged
	// here: the next pass reloads the store and tells a merge, which
	// keeps every event, from a loss (Agent.noteRewrite).
	if size < o.size {
		o.size = size
		o.tail, _ = o.tailHash(size)
		return true, nil, nil
	}
	if t, err := o.tailHash(o.size); err != nil {
		return false, nil, err
	} else if t != o.tail {
		o.size = size
		o.tail, _ = o.tailHash(size)
		return true, nil, nil
	}
	if size == o.size {
		return false, nil, nil
	}
	f, err := os.Open(o.path)
	if err != nil {
		return false, nil, err
	}
	defer f.Close()
	buf := make([]byte, size-o.size)
	if _, err := f.ReadAt(buf, o.size); err != nil && err != io.EOF {
		return false, nil, err
	}
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		return false, nil, nil // a line in the making: wait for its newline
	}
	off := o.size
	for _, line := range bytes.SplitAfter(buf[:end+1], []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if msg := o.checkLine(bytes.TrimRight(line, "\r\n")); msg != "" {
			problems = append(problems, logProblem{Offset: off, Message: fmt.Sprintf("events.ndjson: line appended by another program at offset %d: %s", off, msg)})
		}
		off += int64(len(line))
	}
	o.size = off
	o.tail, err = o.tailHash(o.size)
	return true, problems, err
}

// checkLine verifies one appended line: an event, its id, its signature
// by a key of the backpack, and its place in its actor's chain. It
// returns "" when the line is good.
func (o *ownLog) checkLine(line []byte) string {
	if len(bytes.TrimSpace(line)) == 0 {
		return ""
	}
	e, err := bplog.Parse(line)
	if err != nil {
		return "not an event: " + err.Error()
	}
	if _, _, err := e.CheckID(); err != nil {
		return "event " + e.ID + ": " + err.Error()
	}
	pub, err := o.reg.Resolve(e.KeyID)
	if err != nil && o.reloadKeys() {
		// A command trusted the key meanwhile (`backpack trust`, the
		// TUI): it appended the KEY_PROMOTION and rewrote keys.json.
		pub, err = o.reg.Resolve(e.KeyID)
	}
	if err != nil {
		return fmt.Sprintf("event %s: key %q: %v", e.ID, e.KeyID, err)
	}
	if err := e.VerifySignature(pub); err != nil {
		return "event " + e.ID + ": " + err.Error()
	}
	if head := o.heads[e.Actor]; e.Prev != head {
		return fmt.Sprintf("event %s: prev_event_hash %q is not actor %s's head %q (a fork or a gap)", e.ID, e.Prev, e.Actor, head)
	}
	o.heads[e.Actor] = e.ID
	return ""
}

// reloadKeys reads identity/keys.json again; it reports whether it did.
func (o *ownLog) reloadKeys() bool {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(o.path)), filepath.FromSlash(store.KeysPath)))
	if err != nil {
		return false
	}
	reg, err := bplog.ParseRegistry(data)
	if err != nil {
		return false
	}
	o.reg = reg
	return true
}
