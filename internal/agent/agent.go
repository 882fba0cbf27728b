package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	"github.com/backpack-field/backpack/lora/radiosync"
	"github.com/backpack-field/backpack/watcher"
)

// Options configures an Agent.
type Options struct {
	Dir   string   // the backpack
	Peers []string // peer folder roots
	// KeyFile is the device key file (default: the store's search order).
	KeyFile string
	// Interval between timed passes (default 30 s).
	Interval time.Duration
	// KeepBundles is "auto" (default: delete our bundles every known
	// device holds) or "all".
	KeepBundles string
	Logger      *slog.Logger
	// Settle is the watcher's settle period (default DefaultSettle).
	Settle time.Duration
	// LogProgress logs the progress of long imports about once a second
	// (for a person watching a terminal); subscribers always get it.
	LogProgress bool
	// Radio, when set, also syncs over a LoRa radio.
	Radio *RadioOptions
	// Mount, when set, is where Run also mounts the backpack (as Mount
	// does) until it stops; MountReadMode is its read mode. If mounting
	// fails, the agent syncs without it (mount.go).
	Mount         string
	MountReadMode ReadMode
}

// DefaultSettle is how long a change in a watched folder must be quiet
// before a pass: short, because devices write their bundles by rename
// (whole at once), and a bundle copied in slowly and read too early is
// read again when it changes.
const DefaultSettle = 50 * time.Millisecond

// Agent syncs one backpack with peer folders. Build it with New and call
// Run once.
type Agent struct {
	opts   Options
	log    *slog.Logger
	dir    string // absolute
	uid    string
	devDir string
	peers  []string // absolute peer roots
	w      *watcher.Watcher

	status atomic.Pointer[status.Status]
	syncCh chan struct{} // one slot: "sync now" requests

	// storeMu guards b between the loop's passes and the radio's
	// ingests; ready is closed once the first pass opened b.
	storeMu   sync.Mutex
	ready     chan struct{}
	readyOnce sync.Once
	radio     atomic.Pointer[radiosync.Syncer]
	radioLast atomic.Pointer[status.RadioStatus]
	// warm is b for readers outside the loop (the radio): its read
	// methods are safe for concurrent use and need no storeMu.
	warm atomic.Pointer[store.Backpack]
	// errMu guards errs (the radio goroutine notes errors too).
	errMu sync.Mutex

	// progMu guards progLogged.
	progMu     sync.Mutex
	progLogged time.Time

	// subMu guards subs.
	subMu sync.Mutex
	subs  map[chan struct{}]struct{}

	// Only touched by the loop goroutine (Run's).
	// b is the store kept warm between passes (released, without the
	// lock, while no pass runs); nil before the first pass.
	b            *store.Backpack
	lastThorough time.Time
	ledger       *Ledger
	keyID        string
	own          ownLog
	started      time.Time
	passes       int64
	waiting      string
	errs         []status.ErrorEntry
	folderErr    map[string]string
	peerStat     []status.PeerStatus
	tp           status.Throughput
	recent       []moved
}

// moved is what one pass moved, for the recent rates.
type moved struct {
	at      time.Time
	in, out int
}

// New checks opts and prepares an agent; it touches nothing on disk.
func New(opts Options) (*Agent, error) {
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	switch opts.KeepBundles {
	case "":
		opts.KeepBundles = "auto"
	case "auto", "all":
	default:
		return nil, fmt.Errorf("keep-bundles must be auto or all, not %q", opts.KeepBundles)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.Peers) == 0 && opts.Radio == nil {
		return nil, errors.New("agent: no peer folder and no radio")
	}
	if opts.Radio != nil {
		if _, _, err := opts.Radio.resolve(); err != nil {
			return nil, err
		}
	}
	dir, uid, dev, err := locate(opts.Dir)
	if err != nil {
		return nil, err
	}
	a := &Agent{opts: opts, log: opts.Logger, dir: dir, uid: uid, devDir: dev, ready: make(chan struct{}),
		syncCh: make(chan struct{}, 1), subs: map[chan struct{}]struct{}{}, folderErr: map[string]string{}}
	for _, p := range opts.Peers {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		a.peers = append(a.peers, abs)
	}
	a.own.path = filepath.Join(dir, filepath.FromSlash(store.EventsPath))
	return a, nil
}

// locate returns the backpack in dir as an absolute path, its uid and
// its device directory.
func locate(dir string) (abs, uid, dev string, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", "", err
	}
	g, err := store.ReadGenesis(abs)
	if err != nil {
		return "", "", "", err
	}
	if dev, err = store.DeviceDir(g.UID, abs); err != nil {
		return "", "", "", err
	}
	return abs, g.UID, dev, nil
}

// Status returns the latest status (nil before the first one).
func (a *Agent) Status() *status.Status { return a.status.Load() }

// SyncNow asks for a pass (and a rescan of every folder) without waiting.
func (a *Agent) SyncNow() {
	select {
	case a.syncCh <- struct{}{}:
	default:
	}
}

// Run runs the agent until ctx is done: it takes agent.lock (a second
// agent gets ErrAgentRunning), serves agent.sock, watches the folders and
// runs passes. On cancellation it abandons or finishes the pass in
// flight (the store's writes are crash-safe), removes the socket,
// releases the lock and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	lock, err := lockAgent(filepath.Join(a.devDir, "agent", "agent.lock"), a.started)
	if err != nil {
		return err
	}
	defer lock.release()
	if a.ledger, err = LoadLedger(a.ledgerPath()); err != nil {
		return err
	}
	a.w, err = watcher.New(watcher.Options{Logger: a.log, Settle: a.opts.Settle})
	if err != nil {
		return err
	}
	if err := a.w.Add(filepath.Dir(a.own.path), 0); err != nil {
		return err
	}
	for _, p := range a.peers {
		bd := BackpackDir(p, a.uid)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			if err := os.MkdirAll(bd, 0o755); err != nil {
				return err
			}
		}
		if err := a.w.Add(bd, 2); err != nil {
			return fmt.Errorf("peer folder %s: %w", p, err)
		}
	}
	ln, err := listen(SocketPath(a.devDir))
	if err != nil {
		return err
	}
	a.publish(a.baseStatus())
	var mnt *Mounted
	if a.opts.Mount != "" {
		mnt = a.startMount(ctx)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		if err := a.w.Run(ctx); err != nil && ctx.Err() == nil {
			werr = err
			cancel()
		}
	})
	wg.Go(func() { a.serve(ctx, ln) })
	if a.opts.Radio != nil {
		wg.Go(func() { a.runRadio(ctx, a.ready) })
	}
	a.log.Info("agent started", "backpack", a.dir, "peers", a.peers, "device_dir", a.devDir)
	lerr := a.loop(ctx)
	a.stopMount(mnt)
	cancel()
	ln.Close()
	wg.Wait()
	if a.b != nil {
		a.b.Close()
	}
	os.Remove(SocketPath(a.devDir))
	if s := a.status.Load(); s != nil {
		final := *s
		final.Agent.Running = false
		final.Verdict = verdict(&final)
		a.saveStatus(&final)
	}
	a.log.Info("agent stopped")
	return errors.Join(lerr, werr)
}

func (a *Agent) ledgerPath() string { return filepath.Join(a.devDir, "agent", "ledger.json") }

// loop runs passes until ctx is done.
func (a *Agent) loop(ctx context.Context) error {
	trigger := make(chan struct{}, 1)
	kick := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	kick()
	tick := time.NewTicker(a.opts.Interval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-a.w.Changes():
			if !ok {
				return nil
			}
			if a.relevant(c) {
				kick()
			}
		case <-tick.C:
			kick()
		case <-a.syncCh:
			a.w.RescanNow()
			kick()
		case <-retry.C:
			kick()
		case <-trigger:
			err := a.pass(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, store.ErrLocked):
				if a.waiting == "" {
					a.log.Info("waiting for the backpack lock")
				}
				a.waiting = "waiting for the backpack lock"
				a.publish(a.baseStatus())
				retry.Reset(backoff)
				backoff = min(backoff*2, 2*time.Second)
				continue
			case err != nil:
				a.noteError("pass", err)
				a.publish(a.baseStatus())
			}
			a.waiting = ""
			backoff = 50 * time.Millisecond
		}
	}
}

// relevant decides whether a watcher notice calls for a pass. Notices
// for our own peer directories are ours; events.ndjson is checked for
// lines other programs appended.
func (a *Agent) relevant(c watcher.Change) bool {
	if c.Path == a.own.path {
		changed, problems, err := a.own.check()
		if err != nil {
			a.noteError("events.ndjson", err)
		}
		for _, p := range problems {
			a.log.Warn(p.Message)
			a.noteError("events.ndjson", errors.New(p.Message))
		}
		if len(problems) > 0 {
			a.publish(a.baseStatus())
		}
		return changed
	}
	if filepath.Dir(c.Path) == filepath.Dir(a.own.path) {
		return false
	}
	for _, p := range a.peers {
		if own := a.ownPeerDir(p); c.Path == own || within(c.Path, own) {
			return false
		}
	}
	return true
}

func within(path, dir string) bool {
	return strings.HasPrefix(path, dir+string(filepath.Separator))
}

// noteError records a problem in the bounded list of recent errors.
func (a *Agent) noteError(where string, err error) {
	a.log.Warn("problem", "where", where, "err", err)
	a.errMu.Lock()
	defer a.errMu.Unlock()
	a.errs = append(a.errs, status.ErrorEntry{At: time.Now().UTC(), Where: where, Message: err.Error()})
	if len(a.errs) > maxErrors {
		a.errs = a.errs[len(a.errs)-maxErrors:]
	}
}
