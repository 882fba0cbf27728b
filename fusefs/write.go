package fusefs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// invalidError is input the mount itself refused (EINVAL).
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrRefused }

func invalidf(format string, args ...any) error { return &invalidError{fmt.Sprintf(format, args...)} }

// errno is the one place errors of the write path become errnos. go-fuse's
// ToErrno only knows unwrapped os errors.
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrRefused):
		return syscall.EINVAL
	case errors.Is(err, ErrBusy):
		return syscall.EBUSY
	case errors.Is(err, ErrDenied):
		return syscall.EACCES
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	}
	return syscall.EIO
}

// write runs one write through the source. Writes through the mount are
// serialized. Afterwards the view is rebuilt, so that the writer reads
// its write.
func (s *Server) write(ctx context.Context, fn func(Source) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := fn(s.opts.Source)
	if rerr := s.Refresh(ctx); rerr != nil {
		s.log.Warn("mount: rebuild after a write", "err", rerr)
	}
	return err
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

// appendLines splits complete event lines (data ends with a newline) and
// hands them to the source, which checks and appends them: every line
// must be a signed event that this backpack can apply now. One line that
// fails refuses the whole batch, and nothing changes; an event already
// held is accepted again without effect.
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
	if err := r.Err(); err != nil {
		return invalidf("%v", err)
	}
	if len(lines) == 0 {
		return nil
	}
	return s.write(ctx, func(src Source) error { return src.AppendLines(ctx, lines) })
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
		err = s.write(ctx, func(src Source) error {
			var err error
			id, err = src.Record(ctx, b)
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
	var res []byte
	err := s.write(ctx, func(src Source) error {
		var err error
		res, err = src.ImportBundle(ctx, path)
		return err
	})
	if err != nil {
		s.log.Warn("mount: inbox/ bundle not imported", "file", name, "reason", err)
		s.sess.finish(dirInbox, name, f, suffixResult, errorJSON(err))
		return errno(err)
	}
	s.log.Info("mount: imported", "file", name)
	s.sess.finish(dirInbox, name, f, suffixResult, res)
	return 0
}

func errorJSON(err error) []byte {
	out, _ := json.MarshalIndent(map[string]any{"error": err.Error(), "refused": errors.Is(err, ErrRefused)}, "", "  ")
	return append(out, '\n')
}
