package tui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/backpack-field/backpack/internal/status"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/merkle"
)

// Bounds on what the screen reads from outside.
const (
	// maxStatusLine bounds one status line from the agent's socket.
	maxStatusLine = 8 << 20
	// tailBytes is how much of the end of the log the recent events
	// come from, and maxRecent how many of them are kept.
	tailBytes = 1 << 20
	maxRecent = 500
	// maxStateRows bounds the state entries a detail carries.
	maxStateRows = 20000
	// maxErrFile bounds a rejected bundle's .err note.
	maxErrFile = 64 << 10
	// trustWait is how long Trust waits for the backpack's lock (an
	// agent's pass holds it for a moment).
	trustWait = 30 * time.Second
)

// diskSource reads one backpack: its agent's socket, and the backpack
// and device directory on disk.
type diskSource struct {
	dir     string
	keyFile string
	devDir  string
	socket  string

	mu     sync.Mutex // guards the fields below
	conns  map[net.Conn]struct{}
	closed bool
	// sides caches fork sides found in the log, by event id: a line of
	// the log never changes, so it is looked up once.
	sides map[string]ForkSide
}

// OpenSource returns the Source for the backpack in dir. keyFile is the
// device key file ("" for the default); it is needed to trust a key.
func OpenSource(dir, keyFile string) (Source, error) {
	g, err := store.ReadGenesis(dir)
	if err != nil {
		return nil, err
	}
	dev, err := store.DeviceDir(g.UID, dir)
	if err != nil {
		return nil, err
	}
	return &diskSource{dir: dir, keyFile: keyFile, devDir: dev, socket: agent.SocketPath(dev),
		conns: map[net.Conn]struct{}{}, sides: map[string]ForkSide{}}, nil
}

func (s *diskSource) Subscribe() (<-chan *status.Status, error) {
	c, err := net.DialTimeout("unix", s.socket, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", status.ErrNoAgent, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return nil, errors.New("tui: source closed")
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if _, err := io.WriteString(c, `{"op":"subscribe"}`+"\n"); err != nil {
		s.drop(c)
		return nil, fmt.Errorf("%w: %w", status.ErrNoAgent, err)
	}
	ch := make(chan *status.Status, 1)
	go s.read(c, ch)
	return ch, nil
}

// read forwards the statuses the agent sends on c to ch, keeping only
// the latest when the reader is slow; it closes ch when c ends. It owns c.
func (s *diskSource) read(c net.Conn, ch chan *status.Status) {
	defer close(ch)
	defer s.drop(c)
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := readLine(br, maxStatusLine)
		if err != nil {
			return
		}
		st, err := parseStatus(line)
		if err != nil {
			continue // a line this version cannot read; the next may do
		}
		select { // the only sender: after draining, the send cannot block
		case <-ch:
		default:
		}
		ch <- st
	}
}

func (s *diskSource) drop(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// readLine reads one line of at most max bytes (without its newline).
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, fmt.Errorf("tui: status line longer than %d bytes", max)
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// parseStatus decodes one status line from the agent.
func parseStatus(line []byte) (*status.Status, error) {
	if len(line) > maxStatusLine {
		return nil, fmt.Errorf("tui: status line longer than %d bytes", maxStatusLine)
	}
	var probe struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &probe); err != nil {
		return nil, fmt.Errorf("tui: status from the agent: %w", err)
	}
	if probe.Error != "" {
		return nil, fmt.Errorf("tui: the agent answered: %s", probe.Error)
	}
	st := &status.Status{}
	if err := json.Unmarshal(line, st); err != nil {
		return nil, fmt.Errorf("tui: status from the agent: %w", err)
	}
	return st, nil
}

func (s *diskSource) Offline(ctx context.Context) (*status.Status, error) {
	return agent.OfflineStatus(ctx, s.dir, s.keyFile)
}

func (s *diskSource) Stamp() string {
	var b strings.Builder
	for _, p := range []string{
		filepath.Join(s.dir, store.EventsPath), filepath.Join(s.dir, store.KeysPath),
		filepath.Join(s.dir, store.ManifestSigPath),
		filepath.Join(s.devDir, "quarantine"), filepath.Join(s.devDir, "pending"),
		filepath.Join(s.devDir, "forks"), agent.StatusPath(s.devDir),
	} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d.%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

func (s *diskSource) SyncNow(ctx context.Context) error {
	_, err := agent.Query(ctx, s.socket, "sync")
	return err
}

func (s *diskSource) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *diskSource) Detail(ctx context.Context) (*Detail, error) {
	b, err := store.Open(ctx, s.dir, store.Options{ReadOnly: true, KeyFile: s.keyFile})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	d := &Detail{}
	snap := b.Snapshot()
	d.EventCount = snap.EventCount
	problem := func(what string, err error) {
		d.Problems = append(d.Problems, what+": "+err.Error())
	}
	if h, err := b.StateHash(); err == nil {
		d.StateHash = h
	} else {
		problem("state hash", err)
	}
	d.Manifest, d.ManifestBy = manifestStatus(s.dir, b.Registry(), snap.MerkleRoot)
	if err := s.loadHeld(b, d); err != nil {
		problem("held events", err)
	}
	if err := s.loadForks(ctx, b, d); err != nil {
		problem("forks", err)
	}
	if err := loadKeys(b, d); err != nil {
		problem("untrusted keys", err)
	}
	d.Rejected = readRejected(filepath.Join(s.devDir, "quarantine"))
	if err := loadState(b, d); err != nil {
		problem("state", err)
	}
	rows, err := recentEvents(filepath.Join(s.dir, store.EventsPath))
	if err != nil {
		problem("recent events", err)
	}
	d.Recent, d.RecentOf = rows, snap.EventCount
	return d, nil
}

func (s *diskSource) loadHeld(b *store.Backpack, d *Detail) error {
	q, err := b.Held("quarantine")
	if err != nil {
		return err
	}
	p, err := b.Held("pending")
	if err != nil {
		return err
	}
	d.Quarantine, d.Pending = heldRows(q), heldRows(p)
	return nil
}

func heldRows(hs []store.HeldEvent) []Held {
	out := make([]Held, 0, len(hs))
	for _, h := range hs {
		out = append(out, Held{EventID: h.EventID, Actor: h.Actor, KeyID: h.KeyID, Reason: h.Reason, Source: h.Source, Line: h.Line})
	}
	return out
}

// loadForks reads the fork records and finds each competing event: in the
// log (cached by id) or among the events held as fork evidence.
func (s *diskSource) loadForks(ctx context.Context, b *store.Backpack, d *Detail) error {
	recs, err := b.ForkRecords()
	if err != nil || len(recs) == 0 {
		return err
	}
	evidence, err := b.Held("forks")
	if err != nil {
		return err
	}
	s.mu.Lock()
	want := map[string]bool{}
	for _, r := range recs {
		for id := range r.Sources {
			if _, ok := s.sides[id]; !ok {
				want[id] = true
			}
		}
	}
	s.mu.Unlock()
	if len(want) > 0 {
		found, err := findEvents(ctx, filepath.Join(s.dir, store.EventsPath), want)
		if err != nil {
			return err
		}
		s.mu.Lock()
		for id, side := range found {
			s.sides[id] = side
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		f := Fork{Kind: r.Kind, Actor: r.Actor, ForkPoint: r.ForkPoint, DetectedAt: r.DetectedAt}
		ids := make([]string, 0, len(r.Sources))
		for id := range r.Sources {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			side, ok := s.sides[id]
			if !ok {
				side = ForkSide{EventID: id}
				if h := heldByID(evidence, id); h != nil {
					side = sideFromLine(h.Line)
					side.Where = "held as fork evidence"
				}
			}
			side.Source = r.Sources[id]
			f.Sides = append(f.Sides, side)
		}
		if r.Kind == bplog.ForkSameID {
			// The log holds one content of the id; the others were held.
			for _, h := range evidence {
				if h.EventID == r.ForkPoint {
					side := sideFromLine(h.Line)
					side.Where, side.Source = "held as fork evidence", h.Source
					f.Sides = append(f.Sides, side)
				}
			}
		}
		d.Forks = append(d.Forks, f)
	}
	return nil
}

func heldByID(hs []store.HeldEvent, id string) *store.HeldEvent {
	for i := range hs {
		if hs[i].EventID == id {
			return &hs[i]
		}
	}
	return nil
}

func loadKeys(b *store.Backpack, d *Detail) error {
	waiting, err := b.UntrustedWaiting()
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(waiting))
	for id := range waiting {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := UntrustedKey{KeyID: id, Fingerprint: store.Fingerprint(id), Waiting: waiting[id]}
		if store.IsKeyID(id) {
			if seen, err := b.SeenKey(id); err == nil {
				k.Seen, k.Sources, k.FirstSeen, k.LastSeen = true, seen.Sources, seen.FirstSeen, seen.LastSeen
			}
		}
		d.Keys = append(d.Keys, k)
	}
	return nil
}

// manifestStatus checks manifest.sig against the current Merkle root.
func manifestStatus(dir string, reg *bplog.Registry, root string) (status, by string) {
	data, err := os.ReadFile(filepath.Join(dir, store.ManifestSigPath))
	if errors.Is(err, os.ErrNotExist) {
		return "absent", ""
	}
	if err != nil || len(data) > 1<<20 {
		return "unreadable", ""
	}
	rec, err := merkle.ParseManifestSig(data)
	if err != nil {
		return "unreadable", ""
	}
	pub, kerr := reg.Resolve(rec.KeyID)
	if kerr != nil && !errors.Is(kerr, bplog.ErrRevokedKey) {
		return "unknown key", rec.KeyID
	}
	err = merkle.VerifyManifestSig(rec, pub, root)
	switch {
	case errors.Is(err, merkle.ErrStaleRoot):
		return "stale", rec.KeyID
	case err != nil:
		return "invalid", rec.KeyID
	case kerr != nil:
		return "revoked key", rec.KeyID
	}
	return "ok", rec.KeyID
}

// readRejected lists the bundles kept in the quarantine as refused, from
// their .err notes.
func readRejected(dir string) []RejectedFile {
	names, _ := filepath.Glob(filepath.Join(dir, "bundle-*.err"))
	sort.Strings(names)
	var out []RejectedFile
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, maxErrFile+1))
		f.Close()
		if err != nil {
			continue
		}
		if r, ok := parseRejected(data); ok {
			out = append(out, r)
		}
	}
	return out
}

// parseRejected reads a rejected bundle's note {"file", "reason",
// "held_at_utc"}.
func parseRejected(data []byte) (RejectedFile, bool) {
	if len(data) > maxErrFile {
		return RejectedFile{}, false
	}
	var v struct {
		File   string `json:"file"`
		Reason string `json:"reason"`
		At     string `json:"held_at_utc"`
	}
	if json.Unmarshal(data, &v) != nil || v.Reason == "" {
		return RejectedFile{}, false
	}
	return RejectedFile{File: v.File, Reason: v.Reason, At: v.At}, true
}

func (s *diskSource) Trust(ctx context.Context, keyID string) (*TrustResult, error) {
	if !store.IsKeyID(keyID) {
		return nil, fmt.Errorf("%q is not a key id; trust it with `backpack trust %s KEYFILE`", keyID, s.dir)
	}
	b, err := openWriter(ctx, s.dir, s.keyFile)
	if err != nil {
		return nil, err
	}
	res, err := trustOpen(ctx, b, keyID)
	if cerr := b.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// openWriter opens the backpack for writing, retrying for a bounded time
// while another process (the agent's pass) holds its lock.
func openWriter(ctx context.Context, dir, keyFile string) (*store.Backpack, error) {
	deadline := time.Now().Add(trustWait)
	for {
		b, err := store.Open(ctx, dir, store.Options{KeyFile: keyFile})
		if !errors.Is(err, bplog.ErrLocked) || time.Now().After(deadline) {
			return b, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func trustOpen(ctx context.Context, b *store.Backpack, keyID string) (*TrustResult, error) {
	if _, err := b.Registry().Resolve(keyID); err == nil {
		return nil, fmt.Errorf("key %s is already trusted", keyID)
	}
	k, err := b.SeenKey(keyID)
	if errors.Is(err, store.ErrKeyNotSeen) {
		return nil, fmt.Errorf("key %s has not been seen in any bundle; ask its holder for their identity/keys.json and run `backpack trust %s FILE`", keyID, b.Dir())
	}
	if err != nil {
		return nil, err
	}
	pub, err := k.Public()
	if err != nil {
		return nil, err
	}
	ev, ing, err := b.TrustKey(ctx, pub, []string{"attestation"})
	if err != nil {
		return nil, err
	}
	q, err := b.Held("quarantine")
	if err != nil {
		return nil, err
	}
	return &TrustResult{KeyID: keyID, Fingerprint: k.Fingerprint, EventID: ev.ID, Applied: len(ing.Applied), StillHeld: len(q)}, nil
}
