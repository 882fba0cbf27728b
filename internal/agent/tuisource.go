package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	"github.com/backpack-field/backpack/tui"
)

// Bounds on what the terminal screen's source reads from outside.
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

// tuiSource is the terminal screen's tui.Source for one backpack: its
// agent's socket (statuses, sync requests), and the backpack and the
// device directory on disk (the offline status, details, trust).
type tuiSource struct {
	dir     string
	keyFile string
	devDir  string
	socket  string

	mu     sync.Mutex // guards the fields below
	conns  map[net.Conn]struct{}
	closed bool
	// sides caches fork sides found in the log, by event id: a line of
	// the log never changes, so it is looked up once.
	sides map[string]tui.ForkSide
}

// NewTUISource returns the terminal screen's tui.Source for the backpack
// in dir. keyFile is the device key file ("" for the default); it is
// needed to trust a key. It reads only the backpack's genesis (to find
// the device directory); the rest is read when the screen asks.
func NewTUISource(dir, keyFile string) (tui.Source, error) {
	g, err := store.ReadGenesis(dir)
	if err != nil {
		return nil, err
	}
	dev, err := store.DeviceDir(g.UID, dir)
	if err != nil {
		return nil, err
	}
	return &tuiSource{dir: dir, keyFile: keyFile, devDir: dev, socket: SocketPath(dev),
		conns: map[net.Conn]struct{}{}, sides: map[string]tui.ForkSide{}}, nil
}

func (s *tuiSource) Subscribe() (<-chan *status.Status, error) {
	c, err := net.DialTimeout("unix", s.socket, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", status.ErrNoAgent, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return nil, errors.New("agent: tui source closed")
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
func (s *tuiSource) read(c net.Conn, ch chan *status.Status) {
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

func (s *tuiSource) drop(c net.Conn) {
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
			return nil, fmt.Errorf("agent: status line longer than %d bytes", max)
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
		return nil, fmt.Errorf("agent: status line longer than %d bytes", maxStatusLine)
	}
	var probe struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(line, &probe); err != nil {
		return nil, fmt.Errorf("status from the agent: %w", err)
	}
	if probe.Error != "" {
		return nil, fmt.Errorf("the agent answered: %s", probe.Error)
	}
	st := &status.Status{}
	if err := json.Unmarshal(line, st); err != nil {
		return nil, fmt.Errorf("status from the agent: %w", err)
	}
	return st, nil
}

func (s *tuiSource) Offline(ctx context.Context) (*status.Status, error) {
	return OfflineStatus(ctx, s.dir, s.keyFile)
}

func (s *tuiSource) Stamp() string {
	var b strings.Builder
	for _, p := range []string{
		filepath.Join(s.dir, store.EventsPath), filepath.Join(s.dir, store.KeysPath),
		filepath.Join(s.dir, store.ManifestSigPath),
		filepath.Join(s.devDir, "quarantine"), filepath.Join(s.devDir, "pending"),
		filepath.Join(s.devDir, "forks"), StatusPath(s.devDir),
	} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d.%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

func (s *tuiSource) SyncNow(ctx context.Context) error {
	_, err := Query(ctx, s.socket, "sync")
	return err
}

func (s *tuiSource) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *tuiSource) Trust(ctx context.Context, keyID string) (*tui.TrustResult, error) {
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
	return store.Open(ctx, dir, store.Options{KeyFile: keyFile, LockWait: trustWait})
}

func trustOpen(ctx context.Context, b *store.Backpack, keyID string) (*tui.TrustResult, error) {
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
	return &tui.TrustResult{KeyID: keyID, Fingerprint: k.Fingerprint, EventID: ev.ID, Applied: len(ing.Applied), StillHeld: len(q)}, nil
}

// TUIOptions configures RunTUI.
type TUIOptions struct {
	// Dir is the backpack directory.
	Dir string
	// KeyFile is the device key file ("" for the default); trusting a
	// key needs it.
	KeyFile string
	// In and Out are the terminal (default os.Stdin and os.Stdout).
	In  io.Reader
	Out io.Writer
}

// RunTUI shows the terminal screen (package tui) over the backpack in
// opts.Dir and its running agent, until the user quits or ctx ends. It
// returns tui.ErrNoTerminal, before drawing anything, when Out is not a
// terminal.
func RunTUI(ctx context.Context, opts TUIOptions) error {
	src, err := NewTUISource(opts.Dir, opts.KeyFile)
	if err != nil {
		return err
	}
	return tui.Run(ctx, tui.Options{Source: src, Dir: opts.Dir, In: opts.In, Out: opts.Out})
}
