package fusefs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ErrBusy is returned (as EBUSY through the mount) when a write waited
// longer than Options.LockWait for the backpack's lock.
var ErrBusy = errors.New("fusefs: the backpack stayed locked by another process")

// errInvalid marks input that was refused (EINVAL through the mount).
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error { return &invalidError{fmt.Sprintf(format, args...)} }

// errno is the one place errors of the write path become errnos. go-fuse's
// ToErrno only knows unwrapped os errors.
func errno(err error) syscall.Errno {
	var ie *invalidError
	var re *store.RefusedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ie), errors.As(err, &re):
		return syscall.EINVAL
	case errors.Is(err, ErrBusy), errors.Is(err, bplog.ErrLocked):
		return syscall.EBUSY
	case errors.Is(err, store.ErrNoKey):
		return syscall.EACCES
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	}
	return syscall.EIO
}

// withWriter opens the store as its writer for one batch of work, waiting
// with backoff while another process (the agent, a command) holds the
// lock, up to Options.LockWait. Writes through the mount are serialized.
// After fn, the view is rebuilt so that the writer reads its write.
func (s *Server) withWriter(ctx context.Context, fn func(*store.Backpack) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	deadline := time.Now().Add(s.opts.LockWait)
	wait := 10 * time.Millisecond
	for {
		bp, err := store.Open(ctx, s.opts.Dir, store.Options{KeyFile: s.opts.KeyFile, Logger: s.log})
		if errors.Is(err, bplog.ErrLocked) {
			if time.Now().Add(wait).After(deadline) {
				return fmt.Errorf("%w for %v; try again when its pass is over", ErrBusy, s.opts.LockWait)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait = min(wait*2, 500*time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		err = fn(bp)
		if cerr := bp.Close(); err == nil {
			err = cerr
		}
		if rerr := s.refresh(ctx); rerr != nil {
			s.log.Warn("mount: rebuild after a write", "err", rerr)
		}
		return err
	}
}

// appendHandle takes appends to events/events.ndjson. Every write is an
// append whatever its offset; complete lines are checked and ingested at
// once, a partial line waits for its newline or for close.
type appendHandle struct {
	s *Server
	// mu guards partial; the kernel may send writes of one handle
	// concurrently.
	mu      sync.Mutex
	partial []byte
}

var (
	_ fs.FileWriter  = (*appendHandle)(nil)
	_ fs.FileFlusher = (*appendHandle)(nil)
	_ fs.FileReader  = (*appendHandle)(nil)
)

func (h *appendHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	buf := append(slices.Clone(h.partial), data...)
	cut := bytes.LastIndexByte(buf, '\n')
	if cut < 0 {
		if len(buf) > bplog.MaxLineSize {
			h.s.log.Warn("mount: refused a line to events.ndjson", "reason", "longer than the line limit")
			return 0, syscall.EINVAL
		}
		h.partial = buf
		return uint32(len(data)), 0
	}
	if err := h.s.appendLines(context.WithoutCancel(ctx), buf[:cut+1]); err != nil {
		h.s.log.Warn("mount: refused a write to events.ndjson", "reason", err)
		return 0, errno(err)
	}
	h.partial = slices.Clone(buf[cut+1:])
	return uint32(len(data)), 0
}

// Flush ingests a last line that lacks its newline.
func (h *appendHandle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(bytes.TrimSpace(h.partial)) == 0 {
		h.partial = nil
		return 0
	}
	line := append(h.partial, '\n')
	h.partial = nil
	if err := h.s.appendLines(context.WithoutCancel(ctx), line); err != nil {
		h.s.log.Warn("mount: refused the last line written to events.ndjson", "reason", err)
		return errno(err)
	}
	return 0
}

func (h *appendHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	e := h.s.current().find(eventsPath)
	if e == nil {
		return nil, syscall.ENOENT
	}
	if !e.lr.f.acquire() {
		return h.Read(ctx, dest, off)
	}
	defer e.lr.f.release()
	n, err := e.readAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// maxAppend bounds one batch of lines written to events.ndjson.
const maxAppend = 64 << 20

// appendLines checks complete event lines (data ends with a newline) and
// ingests them. Every line must be a signed event that this backpack can
// apply now: its id matches, its key is trusted, its predecessor is held
// or comes earlier in the batch. One line that fails refuses the whole
// batch, and nothing changes; an event already held is accepted again
// without effect.
func (s *Server) appendLines(ctx context.Context, data []byte) error {
	if len(data) > maxAppend {
		return invalidf("a write of %d bytes is more than %d", len(data), maxAppend)
	}
	var lines [][]byte
	r := bplog.NewReader(bytes.NewReader(data))
	for r.Next() {
		l := r.Line()
		if l.Err != nil {
			return invalidf("line %d: %v", l.Number, l.Err)
		}
		lines = append(lines, slices.Clone(l.Text))
	}
	if len(lines) == 0 {
		return nil
	}
	return s.withWriter(ctx, func(bp *store.Backpack) error {
		evs, err := checkLines(bp, lines)
		if err != nil {
			return err
		}
		res, err := bp.Ingest(ctx, lines, "mount")
		if err != nil {
			return err
		}
		var problems []string
		var drop []string
		mine := map[string]bool{}
		for _, e := range evs {
			mine[e.ID] = true
		}
		for _, h := range append(append(slices.Clone(res.Quarantined), res.Rejected...), res.Pending...) {
			if h.Source == "mount" && mine[h.EventID] {
				problems = append(problems, h.EventID+": "+h.Reason)
				drop = append(drop, h.EventID)
			}
		}
		if len(problems) > 0 {
			// Checked above, so only a race with another writer gets
			// here; do not leave our lines held for later.
			bp.DropHeld("pending", drop, false)
			bp.DropHeld("quarantine", drop, false)
			return invalidf("not applied: %s", strings.Join(problems, "; "))
		}
		s.log.Info("mount: appended events", "applied", len(res.Applied), "duplicates", res.Duplicates, "forks", len(res.Forks))
		return nil
	})
}

// checkLines runs the checks of ingest that decide whether a line can be
// applied, before anything is written.
func checkLines(bp *store.Backpack, lines [][]byte) ([]*bplog.Event, error) {
	reg := bp.Registry()
	front := bp.Frontier()
	batch := map[string]bool{}
	var evs []*bplog.Event
	var unknownPrev []string
	for i, l := range lines {
		e, err := bplog.Parse(l)
		if err != nil {
			return nil, invalidf("line %d: not an event: %v", i+1, err)
		}
		_, signed, idPre, err := e.Encodings()
		if err != nil {
			return nil, invalidf("line %d: %v", i+1, err)
		}
		if rule, want, _ := e.CheckIDWith(idPre); rule == bplog.IDMismatch {
			return nil, invalidf("line %d: event_id %s does not match the content (expected %s)", i+1, e.ID, want)
		}
		if e.Sig == "" {
			return nil, invalidf("line %d: event %s is not signed", i+1, e.ID)
		}
		vk, err := reg.ResolveVerifier(e.KeyID)
		if err != nil {
			return nil, invalidf("line %d: event %s: key %s: %v (trust the key first: backpack trust)", i+1, e.ID, e.KeyID, err)
		}
		if err := e.VerifySignatureWith(vk, signed); err != nil {
			return nil, invalidf("line %d: event %s: signature does not verify", i+1, e.ID)
		}
		if e.HasPrev && !batch[e.Prev] && front[e.Actor].Head != e.Prev {
			unknownPrev = append(unknownPrev, e.Prev)
		}
		batch[e.ID] = true
		evs = append(evs, e)
	}
	if len(unknownPrev) > 0 {
		// Not the actor's head: an earlier event (a fork, or a line
		// already held), or one this backpack lacks. Look in the log.
		missing, err := missingIDs(filepath.Join(bp.Dir(), filepath.FromSlash(store.EventsPath)), unknownPrev)
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			return nil, invalidf("predecessor %s is not in this backpack (append its events first)", missing[0])
		}
	}
	return evs, nil
}

// missingIDs returns the ids of want that no line of the log names as its
// event_id.
func missingIDs(logPath string, want []string) ([]string, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	left := map[string]bool{}
	for _, id := range want {
		left[id] = true
	}
	r := bplog.NewReader(f)
	for r.Next() && len(left) > 0 {
		l := r.Line()
		if l.Err != nil {
			continue
		}
		for id := range left {
			if bytes.Contains(l.Text, []byte(`"event_id":"`+id+`"`)) {
				if e, err := bplog.Parse(l.Text); err == nil && e.ID == id {
					delete(left, id)
				}
			}
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	var out []string
	for _, id := range want {
		if left[id] {
			out = append(out, id)
			delete(left, id)
		}
	}
	return out, nil
}

// newMembers are the members a new/ file may have.
var newMembers = map[string]bool{"type": true, "subject": true, "predicate": true, "value": true, "confidence": true, "namespace": true}

// newBody turns a new/ file into the body of an event: {"subject",
// "predicate", "value"} and optionally "type" (OBSERVATION by default,
// ASSERTION, ATTESTATION or RETRACTION), "confidence" (a number from 0 to
// 1) and "namespace" (a string), as `backpack append` builds it.
func newBody(data []byte) (canon.Value, error) {
	v, err := canon.Parse(bytes.TrimSpace(data))
	if err != nil {
		return canon.Value{}, invalidf("not JSON: %v", err)
	}
	if v.Kind() != canon.Object {
		return canon.Value{}, invalidf(`not a JSON object: write {"subject": ..., "predicate": ..., "value": ...}`)
	}
	for _, m := range v.Members() {
		if !newMembers[m.Key] {
			return canon.Value{}, invalidf("unknown member %q (allowed: type, subject, predicate, value, confidence, namespace)", m.Key)
		}
	}
	str := func(k string) (string, bool) {
		f, ok := v.Get(k)
		return f.Str(), ok && f.Kind() == canon.String
	}
	typ := "OBSERVATION"
	if _, has := v.Get("type"); has {
		t, ok := str("type")
		if !ok || !slices.Contains([]string{"OBSERVATION", "ASSERTION", "ATTESTATION", "RETRACTION"}, t) {
			return canon.Value{}, invalidf("type must be OBSERVATION, ASSERTION, ATTESTATION or RETRACTION")
		}
		typ = t
	}
	subject, ok1 := str("subject")
	predicate, ok2 := str("predicate")
	if !ok1 || !ok2 || subject == "" || predicate == "" {
		return canon.Value{}, invalidf("subject and predicate must be non-empty strings")
	}
	var payload canon.ObjectBuilder
	payload.Set("subject", canon.StringValue(subject)).Set("predicate", canon.StringValue(predicate))
	if val, ok := v.Get("value"); ok {
		payload.Set("value", val)
	} else if typ != "RETRACTION" {
		return canon.Value{}, invalidf("%s needs a value", typ)
	}
	if c, ok := v.Get("confidence"); ok {
		if k := c.Kind(); k != canon.Float && k != canon.Int {
			return canon.Value{}, invalidf("confidence must be a number from 0 to 1")
		}
		f := c.Float()
		if k := c.Kind(); k == canon.Int {
			n, _ := c.Int64()
			f = float64(n)
		}
		if !(f >= 0 && f <= 1) {
			return canon.Value{}, invalidf("confidence must be a number from 0 to 1")
		}
		payload.Set("confidence", canon.FloatValue(f))
	}
	var body canon.ObjectBuilder
	body.Set("type", canon.StringValue(typ)).Set("payload", payload.Value())
	if _, has := v.Get("namespace"); has {
		ns, ok := str("namespace")
		if !ok || ns == "" {
			return canon.Value{}, invalidf("namespace must be a non-empty string")
		}
		body.Set("namespace", canon.StringValue(ns))
	}
	return body.Value(), nil
}

// recordNew signs the observation in a new/ file and appends it; the file
// becomes NAME.done (the event id) or NAME.error (the reason).
func (s *Server) recordNew(ctx context.Context, name string, f *sfile, data []byte) syscall.Errno {
	ctx = context.WithoutCancel(ctx)
	b, err := newBody(data)
	var id string
	if err == nil {
		err = s.withWriter(ctx, func(bp *store.Backpack) error {
			ev, err := bp.Append(b)
			if err == nil {
				id = ev.ID
			}
			return err
		})
	}
	if err != nil {
		s.log.Warn("mount: new/ file refused", "file", name, "reason", err)
		s.sess.finish(dirNew, name, f, suffixError, []byte(err.Error()+"\n"))
		return errno(err)
	}
	s.log.Info("mount: recorded", "file", name, "event", id)
	s.sess.finish(dirNew, name, f, suffixDone, []byte(id+"\n"))
	return 0
}

// importDropped imports a bundle written into inbox/; NAME.result shows
// what came of it (the import's result as JSON, or the error).
func (s *Server) importDropped(ctx context.Context, name string, f *sfile, path string) syscall.Errno {
	ctx = context.WithoutCancel(ctx)
	var res *store.ImportResult
	err := s.withWriter(ctx, func(bp *store.Backpack) error {
		var err error
		res, err = bp.ImportBundle(ctx, path)
		return err
	})
	if err != nil {
		s.log.Warn("mount: inbox/ bundle not imported", "file", name, "reason", err)
		s.sess.finish(dirInbox, name, f, suffixResult, errorJSON(err))
		return errno(err)
	}
	out, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		out = errorJSON(err)
	}
	s.log.Info("mount: imported", "file", name, "applied", len(res.Applied))
	s.sess.finish(dirInbox, name, f, suffixResult, append(out, '\n'))
	return 0
}

func errorJSON(err error) []byte {
	var re *store.RefusedError
	out, _ := json.MarshalIndent(map[string]any{"error": err.Error(), "refused": errors.As(err, &re)}, "", "  ")
	return append(out, '\n')
}
