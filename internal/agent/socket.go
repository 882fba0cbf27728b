package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
)

// maxSocketPath is the longest path a unix socket address may have on
// Linux (sun_path is 108 bytes with its NUL).
const maxSocketPath = 107

// ErrNoAgent is status.ErrNoAgent, returned by Query when no agent
// answers on the socket. It stays here for fusefs, which checks it under
// this name.
var ErrNoAgent = status.ErrNoAgent

// listen opens the agent's socket, replacing a stale one (the caller holds
// agent.lock, so no live agent uses it).
func listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is longer than %d bytes; set XDG_STATE_HOME to a shorter directory", path, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	os.Remove(path)
	return net.Listen("unix", path)
}

// request is one line a client sends.
type request struct {
	Op string `json:"op"` // "status", "subscribe" or "sync"
}

// serve answers clients until ctx is done; it closes every connection
// before returning.
func (a *Agent) serve(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			break
		}
		conns[c] = true
		mu.Unlock()
		wg.Go(func() {
			a.handle(ctx, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		})
	}
	wg.Wait()
}

// handle serves one connection: one request per line.
func (a *Agent) handle(ctx context.Context, c net.Conn) {
	sc := bufio.NewScanner(c)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			enc.Encode(map[string]string{"error": "bad request: " + err.Error()})
			continue
		}
		switch req.Op {
		case "status":
			if enc.Encode(a.Status()) != nil {
				return
			}
		case "sync":
			a.SyncNow()
			if enc.Encode(map[string]bool{"ok": true}) != nil {
				return
			}
		case "subscribe":
			a.subscribe(ctx, c, enc)
			return
		default:
			enc.Encode(map[string]string{"error": fmt.Sprintf("unknown op %q", req.Op)})
		}
	}
}

// subscribe sends the status now and after every change until the client
// goes away. A slow client misses intermediate states, never the latest:
// the notification channel has one slot and the latest status is read
// when it is sent.
func (a *Agent) subscribe(ctx context.Context, c net.Conn, enc *json.Encoder) {
	ch := make(chan struct{}, 1)
	a.subMu.Lock()
	a.subs[ch] = struct{}{}
	a.subMu.Unlock()
	defer func() {
		a.subMu.Lock()
		delete(a.subs, ch)
		a.subMu.Unlock()
	}()
	// A reader notices the client closing its end.
	gone := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				close(gone)
				return
			}
		}
	}()
	for {
		if enc.Encode(a.Status()) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case <-ch:
		}
	}
}

// onProgress hears a long import's progress (from the store's reporter
// goroutine): it goes to subscribers at once (not to status.json) and,
// with Options.LogProgress, to the log about once a second.
func (a *Agent) onProgress(p store.Progress) {
	if prev := a.status.Load(); prev != nil {
		s := *prev
		s.Agent.Progress = &status.ProgressStatus{Source: p.Source, Phase: p.Phase, Done: p.Done, Total: p.Total}
		a.status.Store(&s)
		a.notify()
	}
	if !a.opts.LogProgress {
		return
	}
	a.progMu.Lock()
	defer a.progMu.Unlock()
	if now := time.Now(); p.Phase != "checking" || p.Done == p.Total || now.Sub(a.progLogged) >= time.Second {
		a.progLogged = now
		a.log.Info("import progress", "source", p.Source, "phase", p.Phase, "done", p.Done, "total", p.Total)
	}
}

// publish makes s the current status: stored, written to status.json and
// announced to subscribers without blocking.
func (a *Agent) publish(s *status.Status) {
	a.status.Store(s)
	a.saveStatus(s)
	a.notify()
}

// notify wakes the subscribers.
func (a *Agent) notify() {
	a.subMu.Lock()
	for ch := range a.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	a.subMu.Unlock()
}

func (a *Agent) saveStatus(s *status.Status) {
	data, err := json.MarshalIndent(s, "", "  ")
	if err == nil {
		err = store.WriteFileAtomic(StatusPath(a.devDir), append(data, '\n'), 0o600)
	}
	if err != nil {
		a.log.Warn("write status.json", "err", err)
	}
}

// baseStatus is the current status with the agent's own sections
// refreshed; the backpack sections stay as the last pass left them.
func (a *Agent) baseStatus() *status.Status {
	s := &status.Status{}
	if old := a.status.Load(); old != nil {
		*s = *old
	}
	s.Agent = status.AgentStatus{Running: true, PID: os.Getpid(), StartedAt: a.started.UTC(), Passes: a.passes, Waiting: a.waiting, LastPass: s.Agent.LastPass}
	s.Folders = nil
	ws := a.w.Status()
	for _, p := range a.peers {
		fs := status.FolderStatus{Path: p, Mode: "starting", LastError: a.folderErr[p]}
		bd := BackpackDir(p, a.uid)
		for _, r := range ws {
			if r.Root == bd {
				fs.Mode, fs.FSType, fs.Reason, fs.LastScan = string(r.Mode), r.FSType, r.Reason, r.LastScan.UTC()
				if fs.LastError == "" {
					fs.LastError = r.LastError
				}
			}
		}
		s.Folders = append(s.Folders, fs)
	}
	s.Peers = a.peerStat
	// The radio goroutine keeps its last status here: asking the syncer
	// from a pass (which holds storeMu) could wait on a syncer that waits
	// on storeMu.
	s.Radio = a.radioLast.Load()
	if r := s.Radio; r != nil {
		// Devices heard over the radio are peers too.
		s.Peers = append([]status.PeerStatus(nil), s.Peers...)
		for _, p := range r.Peers {
			ps := status.PeerStatus{KeyID: p.KeyID, Folder: "radio " + r.Device, Medium: "radio", TheyLack: p.ToSend, Trusted: true}
			if !p.LastHeard.IsZero() {
				ps.LastContact = pytime.FormatUTC(p.LastHeard)
			}
			if !p.InSync && p.ToSend == 0 {
				ps.LastError = "frontiers differ; waiting for the next exchange"
			}
			s.Peers = append(s.Peers, ps)
		}
	}
	a.errMu.Lock()
	s.Errors = append([]status.ErrorEntry(nil), a.errs...)
	a.errMu.Unlock()
	s.Throughput = a.tp
	s.Verdict = verdict(s)
	return s
}

// Query sends one request ("status" or "sync") to the agent listening on
// socket and returns its status (nil for "sync"). It returns ErrNoAgent
// when nothing listens there.
func Query(ctx context.Context, socket, op string) (*status.Status, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", status.ErrNoAgent, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := json.NewEncoder(c).Encode(request{Op: op}); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	if op != "status" {
		return nil, nil
	}
	s := &status.Status{}
	if err := json.Unmarshal(line, s); err != nil {
		return nil, err
	}
	return s, nil
}
