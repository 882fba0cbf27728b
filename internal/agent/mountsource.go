package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/backpack-field/backpack/fusefs"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/reducer"
)

// MountSource is the store behind a mount: it implements fusefs.Source.
// It keeps one Backpack open for the life of the mount, released (without
// the writer lock) between uses, so that loading a new view or writing
// through the mount catches up with what others wrote in time of what
// changed (store.Backpack.Reacquire), not in the size of the backpack.
// The lock is held only to catch up and to write, never while a view is
// built.
//
// Its methods are safe for concurrent use; they take turns.
type MountSource struct {
	dir     string
	keyFile string
	log     *slog.Logger
	// lockWait bounds how long a write waits for the lock; loadWait how
	// long a load does before it reads a read-only copy instead.
	lockWait, loadWait time.Duration
	// status builds status.json for a load (nil: none).
	status func(ctx context.Context, b *store.Backpack) []byte

	// mu guards the fields below, and makes loads and writes take turns.
	mu sync.Mutex
	b  *store.Backpack // released between uses; nil until opened
	// readOnly is set while the backpack cannot be opened as its writer
	// (a read-only file system, no permission): loads then open it
	// read-only each time, at the cost of a full load.
	readOnly bool
}

// MountSourceOptions configures NewMountSource.
type MountSourceOptions struct {
	KeyFile string       // the device key (signs new/ observations)
	Logger  *slog.Logger // default: discard
	// LockWait bounds how long a write waits for the backpack's lock
	// while another process writes (default 15 s); the write then fails
	// with EBUSY.
	LockWait time.Duration
	// Status puts status.json in the views: the running agent's status,
	// or the status built from the backpack when no agent runs.
	Status bool
}

// NewMountSource returns the source of a mount of the backpack in dir. It
// opens the backpack at the first use; Close closes it.
func NewMountSource(dir string, opts MountSourceOptions) (*MountSource, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := store.ReadGenesis(abs); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LockWait <= 0 {
		opts.LockWait = 15 * time.Second
	}
	m := &MountSource{dir: abs, keyFile: opts.KeyFile, log: opts.Logger, lockWait: opts.LockWait, loadWait: time.Second}
	if opts.Status {
		m.status = m.standaloneStatus
	}
	return m, nil
}

// Close closes the backpack.
func (m *MountSource) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil {
		return nil
	}
	err := m.b.Close()
	m.b = nil
	return err
}

var _ fusefs.Source = (*MountSource)(nil)

// acquireLocked returns the backpack holding the writer lock and caught up
// with the disk, waiting up to wait while another process writes (then
// it returns store.ErrLocked). Release it with releaseLocked.
func (m *MountSource) acquireLocked(ctx context.Context, wait time.Duration) (*store.Backpack, error) {
	if m.b == nil {
		b, err := store.Open(ctx, m.dir, store.Options{KeyFile: m.keyFile, Logger: m.log, LockWait: wait})
		if err != nil {
			return nil, err
		}
		m.b = b
		return b, nil
	}
	r, err := m.b.ReacquireWait(ctx, false, wait)
	if err != nil {
		if !errors.Is(err, store.ErrLocked) {
			// Start afresh next time.
			m.b.Close()
			m.b = nil
		}
		return nil, err
	}
	if r.Reloaded != "" {
		m.log.Info("mount: backpack reloaded", "reason", r.Reloaded)
	}
	return m.b, nil
}

// releaseLocked gives the writer lock back; the backpack stays in memory.
func (m *MountSource) releaseLocked() {
	if err := m.b.Release(); err != nil {
		m.log.Warn("mount: releasing the backpack", "err", err)
	}
}

// Load implements fusefs.Source. While another process holds the lock
// for longer than a second (a long import), it reads a read-only copy of
// the backpack instead, at the cost of a full load.
func (m *MountSource) Load(ctx context.Context, fn func(*fusefs.Snapshot) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.readOnly {
		b, err := m.acquireLocked(ctx, m.loadWait)
		if err == nil {
			m.releaseLocked()
			return m.load(ctx, b, fn)
		}
		if ctx.Err() != nil {
			return err
		}
		if !errors.Is(err, store.ErrLocked) {
			m.log.Warn("mount: cannot open the backpack as its writer; reading it read-only (slower), writes will fail", "err", err)
			m.readOnly = true
		}
	}
	ro, err := store.Open(ctx, m.dir, store.Options{ReadOnly: true, KeyFile: m.keyFile, Logger: m.log})
	if err != nil {
		return err
	}
	defer ro.Close()
	return m.load(ctx, ro, fn)
}

// load hands fn the snapshot of b.
func (m *MountSource) load(ctx context.Context, b *store.Backpack, fn func(*fusefs.Snapshot) error) error {
	snap := b.Snapshot()
	s := &fusefs.Snapshot{UID: snap.UID, Events: snap.EventCount, LogSize: snap.LogSize, MerkleRoot: snap.MerkleRoot}
	var err error
	if s.Quarantine, err = held(b, "quarantine"); err != nil {
		return err
	}
	if s.Pending, err = held(b, "pending"); err != nil {
		return err
	}
	if s.ForkHeld, err = held(b, "forks"); err != nil {
		return err
	}
	records, err := b.ForkRecords()
	if err != nil {
		m.log.Warn("mount: fork records unreadable", "err", err)
	}
	for _, r := range records {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			continue
		}
		fr := fusefs.ForkRecord{Actor: r.Actor, ForkPoint: r.ForkPoint, JSON: append(data, '\n')}
		for id := range r.Sources {
			fr.EventIDs = append(fr.EventIDs, id)
		}
		sort.Strings(fr.EventIDs)
		s.ForkRecords = append(s.ForkRecords, fr)
	}
	if m.status != nil {
		s.Status = m.status(ctx, b)
	}
	return b.WithState(func(st *reducer.State) error {
		s.State = st
		return fn(s)
	})
}

func held(b *store.Backpack, kind string) ([]fusefs.Held, error) {
	list, err := b.Held(kind)
	if err != nil {
		return nil, fmt.Errorf("read held %s events: %w", kind, err)
	}
	out := make([]fusefs.Held, 0, len(list))
	for _, h := range list {
		data, err := json.MarshalIndent(h, "", "  ")
		if err != nil {
			continue
		}
		out = append(out, fusefs.Held{EventID: h.EventID, Line: h.Line, JSON: append(data, '\n')})
	}
	return out, nil
}

// statusWait bounds a status query to a running agent.
const statusWait = 2 * time.Second

// standaloneStatus is status.json for a mount outside the agent: the
// running agent's status, or the status built from b when none runs.
func (m *MountSource) standaloneStatus(ctx context.Context, b *store.Backpack) []byte {
	st, err := m.queryAgent(ctx, b.UID())
	if err != nil {
		st, err = offlineStatusOf(b)
	}
	if err != nil {
		m.log.Warn("mount: status unavailable", "err", err)
		return []byte(fmt.Sprintf("{\"error\": %q}\n", err.Error()))
	}
	return statusJSON(st)
}

// queryAgent asks the agent of this backpack for its status; ErrNoAgent
// when none runs (or it does not answer in time).
func (m *MountSource) queryAgent(ctx context.Context, uid string) (*status.Status, error) {
	dev, err := store.DeviceDir(uid, m.dir)
	if err != nil {
		return nil, err
	}
	sock := SocketPath(dev)
	if _, err := os.Stat(sock); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoAgent, err)
	}
	qctx, cancel := context.WithTimeout(ctx, statusWait)
	defer cancel()
	st, err := Query(qctx, sock, "status")
	if err != nil && qctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: no answer in %v", ErrNoAgent, statusWait)
	}
	return st, err
}

// offlineStatusOf is OfflineStatus of an open backpack.
func offlineStatusOf(b *store.Backpack) (*status.Status, error) {
	s := &status.Status{}
	dev, err := store.DeviceDir(b.UID(), b.Dir())
	if err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(StatusPath(dev)); err == nil {
		json.Unmarshal(data, s) // a damaged file only loses the last agent's view
	}
	if err := fillBackpack(s, b); err != nil {
		return nil, err
	}
	s.Agent.Running = false
	s.Agent.PID = 0
	s.Agent.Waiting = ""
	s.Verdict = verdict(s)
	return s, nil
}

func statusJSON(s *status.Status) []byte {
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return []byte(fmt.Sprintf("{\"error\": %q}\n", err.Error()))
	}
	return append(out, '\n')
}

// write runs fn on the backpack holding the writer lock, waiting for it
// up to lockWait.
func (m *MountSource) write(ctx context.Context, fn func(*store.Backpack) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.acquireLocked(ctx, m.lockWait)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%w for %v; try again when its pass is over", fusefs.ErrBusy, m.lockWait)
	}
	if err != nil {
		return err
	}
	m.readOnly = false
	defer m.releaseLocked()
	return fn(b)
}

// refused marks an error as refused input (EINVAL through the mount),
// keeping its message.
type refused struct{ error }

func (r refused) Is(target error) bool { return target == fusefs.ErrRefused }
func (r refused) Unwrap() error        { return r.error }

func refusedf(format string, args ...any) error { return refused{fmt.Errorf(format, args...)} }

// translate gives store errors the mount's meaning.
func translate(err error) error {
	var re *store.RefusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return refused{err}
	case errors.Is(err, store.ErrNoKey):
		return fmt.Errorf("%w: %w", fusefs.ErrDenied, err)
	}
	return err
}

// AppendLines implements fusefs.Source: the lines are checked as ingest
// would (id, signature by a trusted key, predecessor held or earlier in
// the batch) before anything is written, then ingested.
func (m *MountSource) AppendLines(ctx context.Context, lines [][]byte) error {
	err := m.write(ctx, func(b *store.Backpack) error {
		evs, err := checkLines(b, lines)
		if err != nil {
			return err
		}
		res, err := b.Ingest(ctx, lines, "mount")
		if err != nil {
			return err
		}
		var problems, drop []string
		mine := map[string]bool{}
		for _, e := range evs {
			mine[e.ID] = true
		}
		for _, h := range slices.Concat(res.Quarantined, res.Rejected, res.Pending) {
			if h.Source == "mount" && mine[h.EventID] {
				problems = append(problems, h.EventID+": "+h.Reason)
				drop = append(drop, h.EventID)
			}
		}
		if len(problems) > 0 {
			// Checked above, so only a race with another writer gets
			// here; do not leave our lines held for later.
			b.DropHeld("pending", drop, false)
			b.DropHeld("quarantine", drop, false)
			return refusedf("not applied: %s", strings.Join(problems, "; "))
		}
		m.log.Info("mount: appended events", "applied", len(res.Applied), "duplicates", res.Duplicates, "forks", len(res.Forks))
		return nil
	})
	return translate(err)
}

// checkLines runs the checks of ingest that decide whether a line can be
// applied, before anything is written.
func checkLines(b *store.Backpack, lines [][]byte) ([]*bplog.Event, error) {
	reg := b.Registry()
	front := b.Frontier()
	batch := map[string]bool{}
	var evs []*bplog.Event
	var unknownPrev []string
	for i, l := range lines {
		e, err := bplog.Parse(l)
		if err != nil {
			return nil, refusedf("line %d: not an event: %v", i+1, err)
		}
		_, signed, idPre, err := e.Encodings()
		if err != nil {
			return nil, refusedf("line %d: %v", i+1, err)
		}
		if rule, want, _ := e.CheckIDWith(idPre); rule == bplog.IDMismatch {
			return nil, refusedf("line %d: event_id %s does not match the content (expected %s)", i+1, e.ID, want)
		}
		if e.Sig == "" {
			return nil, refusedf("line %d: event %s is not signed", i+1, e.ID)
		}
		vk, err := reg.ResolveVerifier(e.KeyID)
		if err != nil {
			return nil, refusedf("line %d: event %s: key %s: %v (trust the key first: backpack trust)", i+1, e.ID, e.KeyID, err)
		}
		if err := e.VerifySignatureWith(vk, signed); err != nil {
			return nil, refusedf("line %d: event %s: signature does not verify", i+1, e.ID)
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
		missing, err := missingIDs(filepath.Join(b.Dir(), filepath.FromSlash(store.EventsPath)), unknownPrev)
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			return nil, refusedf("predecessor %s is not in this backpack (append its events first)", missing[0])
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

// Record implements fusefs.Source: body is signed with the device key.
func (m *MountSource) Record(ctx context.Context, body canon.Value) (string, error) {
	var id string
	err := m.write(ctx, func(b *store.Backpack) error {
		ev, err := b.Append(body)
		if err == nil {
			id = ev.ID
		}
		return err
	})
	return id, translate(err)
}

// ImportBundle implements fusefs.Source with store.ImportBundle; the
// result is its ImportResult as JSON.
func (m *MountSource) ImportBundle(ctx context.Context, path string) ([]byte, error) {
	var res *store.ImportResult
	err := m.write(ctx, func(b *store.Backpack) error {
		var err error
		res, err = b.ImportBundle(ctx, path)
		return err
	})
	if err != nil {
		return nil, translate(err)
	}
	out, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	m.log.Info("mount: imported a bundle", "applied", len(res.Applied))
	return append(out, '\n'), nil
}
