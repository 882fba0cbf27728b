package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// pass opens the store, syncs every peer folder, publishes the status and
// closes the store. store.ErrLocked means another process writes the
// backpack: the caller retries.
func (a *Agent) pass(ctx context.Context) (err error) {
	// Lines other programs appended are checked before the store absorbs
	// them.
	if _, problems, cerr := a.own.check(); cerr == nil {
		for _, p := range problems {
			a.noteError("events.ndjson", errors.New(p.Message))
		}
	}
	a.storeMu.Lock()
	defer a.storeMu.Unlock()
	b, err := a.acquire(ctx)
	if err != nil {
		return err
	}
	a.readyOnce.Do(func() { close(a.ready) })
	defer func() {
		if rerr := b.Release(); rerr != nil {
			// Start from the files next time.
			b.Close()
			a.b = nil
			a.warm.Store(nil)
			if err == nil {
				err = rerr
			}
		}
	}()
	key, err := b.SigningKey()
	if err != nil {
		return err
	}
	a.keyID = key.ID
	t0 := time.Now()
	var peers []status.PeerStatus
	in, out := 0, 0
	for _, root := range a.peers {
		ps, n, m, err := a.passFolder(ctx, b, key, root)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if a.folderErr[root] != err.Error() {
				a.noteError(root, err)
			}
			a.folderErr[root] = err.Error()
		} else {
			delete(a.folderErr, root)
		}
		peers = append(peers, ps...)
		in += n
		out += m
	}
	if err := a.ledger.Save(a.ledgerPath()); err != nil {
		return err
	}
	if err := a.own.reset(b); err != nil {
		return err
	}
	a.passes++
	a.peerStat = peers
	a.count(in, out)
	s := a.baseStatus()
	s.Agent.LastPass = time.Now().UTC()
	if err := fillBackpack(s, b); err != nil {
		return err
	}
	s.Verdict = verdict(s)
	a.publish(s)
	if in+out > 0 {
		a.log.Info("pass", "events_in", in, "events_out", out, "events", s.Backpack.Events, "took", time.Since(t0))
	} else {
		a.log.Debug("pass", "took", time.Since(t0))
	}
	return nil
}

// thoroughEvery is how often a pass checks the whole log the warm store
// holds by its hash, not only its recognisable tail.
const thoroughEvery = 5 * time.Minute

// acquire returns the store for a pass, with the writer lock: the warm
// one kept from the last pass, caught up with what other writers did
// meanwhile, or a fresh open.
func (a *Agent) acquire(ctx context.Context) (*store.Backpack, error) {
	if a.b == nil {
		b, err := store.Open(ctx, a.dir, store.Options{KeyFile: a.opts.KeyFile, Logger: a.log, Progress: a.onProgress})
		if err != nil {
			return nil, err
		}
		a.b, a.lastThorough = b, time.Now()
		a.warm.Store(b)
		return b, nil
	}
	thorough := time.Since(a.lastThorough) >= thoroughEvery
	before := a.b.Snapshot()
	res, err := a.b.Reacquire(ctx, thorough)
	if err != nil {
		return nil, err
	}
	if thorough {
		a.lastThorough = time.Now()
	}
	if res.Reloaded != "" {
		a.noteRewrite(before, a.b.Snapshot(), res.Reloaded)
	}
	return a.b, nil
}

// noteRewrite judges a rewrite of events.ndjson by another program: a
// merge by another backpack command (or the reference's sync) keeps every
// event and is only logged; a rewrite that lost events is an error in the
// status.
func (a *Agent) noteRewrite(before, after *store.Snapshot, why string) {
	var lost []string
	for actor, h := range before.Heads {
		if n := after.Heads[actor].Events; n < h.Events {
			lost = append(lost, fmt.Sprintf("actor %s: %d of %d events", actor, h.Events-n, h.Events))
		}
	}
	if len(lost) == 0 && len(after.BadLines) <= len(before.BadLines) {
		a.log.Info("events.ndjson was rewritten by another program; every event is still there", "why", why)
		return
	}
	sort.Strings(lost)
	msg := fmt.Sprintf("events.ndjson was rewritten by another program (%s)", why)
	if len(lost) > 0 {
		msg += " and lost events: " + strings.Join(lost, "; ")
	}
	if d := len(after.BadLines) - len(before.BadLines); d > 0 {
		msg += fmt.Sprintf("; %d more unusable lines", d)
	}
	a.noteError("events.ndjson", errors.New(msg))
}

// ownPeerDir is our directory in the peer folder root.
func (a *Agent) ownPeerDir(root string) string {
	if a.keyID == "" {
		return filepath.Join(BackpackDir(root, a.uid), "\x00") // matches nothing yet
	}
	return filepath.Join(BackpackDir(root, a.uid), a.keyID)
}

// peerDev is another device's directory, as read in one pass.
type peerDev struct {
	name  string
	dev   *Device
	front *PeerFrontier
	st    status.PeerStatus
}

// passFolder syncs one peer folder: import, export, frontier, cleanup. It
// returns the status of the devices heard from and the events imported
// and exported.
func (a *Agent) passFolder(ctx context.Context, b *store.Backpack, key bplog.PrivateKey, root string) ([]status.PeerStatus, int, int, error) {
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, 0, 0, fmt.Errorf("peer folder %s is not reachable", root)
	}
	fs := a.ledger.Folder(root)
	bd := BackpackDir(root, a.uid)
	mine := filepath.Join(bd, key.ID)
	if err := os.MkdirAll(filepath.Join(mine, "bundles"), 0o755); err != nil {
		return nil, 0, 0, err
	}
	dev := Device{UID: a.uid, KeyID: key.ID, Public: key.Public(), Actor: b.Actor()}
	if err := writeIfChanged(filepath.Join(mine, "device.json"), dev.Encode()); err != nil {
		return nil, 0, 0, err
	}

	// 1-2: the other devices, and their bundles.
	entries, err := os.ReadDir(bd)
	if err != nil {
		return nil, 0, 0, err
	}
	reg := b.Registry()
	var peers []*peerDev
	in := 0
	for _, e := range entries {
		if !e.IsDir() || e.Name() == key.ID || e.Name()[0] == '.' {
			continue
		}
		p := &peerDev{name: e.Name(), st: status.PeerStatus{KeyID: e.Name(), Folder: root}}
		peers = append(peers, p)
		dir := filepath.Join(bd, e.Name())
		if err := p.read(dir, a.uid); err != nil {
			p.st.LastError = err.Error()
		} else {
			p.st.Actor = p.dev.Actor
			p.st.LastContact = p.front.UpdatedAt
			if k, ok := reg.Key(p.dev.KeyID); ok && k.Status != bplog.StatusRevoked {
				p.st.Trusted = true
			} else if sk, _ := b.SeenKey(p.dev.KeyID); sk == nil {
				// Its signed frontier proves it holds the key: a person
				// may now trust it by key id (`backpack trust DIR KEYID`).
				if _, err := b.NoteSeenKeys([]store.SeenOffer{{Public: p.dev.Public, Sender: true}}, dir); err != nil {
					a.noteError(dir, err)
				}
			}
		}
		n, err := a.importFrom(ctx, b, fs, dir, p)
		in += n
		if err != nil {
			return nil, in, 0, err
		}
	}

	// 3: export what the devices heard from lack: one pass over the
	// index for all of them, in log order.
	ours := b.Frontier()
	var heard []*peerDev
	var basis []bplog.Frontier
	for _, p := range peers {
		if p.front != nil {
			heard = append(heard, p)
			basis = append(basis, p.front.Frontier)
		}
	}
	var lists [][]string
	var deltas []map[string]bool
	var order []string
	lineOf := map[string][]byte{}
	if len(heard) > 0 {
		lines, which, err := b.Deltas(ctx, basis)
		if err != nil {
			return nil, in, 0, err
		}
		ids := make([]string, len(lines))
		for i, l := range lines {
			if e, err := bplog.Parse(l); err == nil {
				ids[i] = e.ID
				lineOf[e.ID] = l
				order = append(order, e.ID)
			}
		}
		for fi, p := range heard {
			list := make([]string, 0, len(which[fi]))
			set := make(map[string]bool, len(which[fi]))
			for _, i := range which[fi] {
				if ids[i] != "" {
					list = append(list, ids[i])
					set[ids[i]] = true
				}
			}
			p.st.TheyLack = len(list)
			p.st.WeLack = weLack(ours, p.front.Frontier)
			lists = append(lists, list)
			deltas = append(deltas, set)
		}
	}
	if err := a.syncExported(fs, mine); err != nil {
		return nil, in, 0, err
	}
	out := 0
	if len(lists) > 0 {
		ids := exportIDs(order, lists, fs.carried())
		// A device that holds nothing (one joining from this folder)
		// needs a full-history bundle: genesis, keys.json, policies.
		// Our bundles present carry events, not those files.
		if len(ids) > 0 || (needsFull(basis) && !fs.hasFull()) {
			if err := a.export(b, key, fs, mine, ids, lineOf, ours, exportBasis(basis)); err != nil {
				return nil, in, 0, err
			}
			out = len(ids)
		}
	}

	// 4: our frontier.
	// Published with chain ancestors, so that a peer behind us on an
	// actor (normally ours) sends only what follows where our chains meet.
	published, err := b.FrontierWithAncestors(ctx)
	if err != nil {
		return nil, in, out, err
	}
	if err := a.writeFrontier(fs, mine, key, published); err != nil {
		return nil, in, out, err
	}

	// 5: cleanup.
	if a.opts.KeepBundles == "auto" {
		kept := fs.Exported[:0]
		for _, e := range fs.Exported {
			if removable(e.EventIDs, deltas) && !(e.Full && needsFull(basis)) {
				if err := os.Remove(filepath.Join(mine, "bundles", e.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, in, out, err
				}
				a.log.Info("removed our bundle every device holds", "folder", root, "bundle", e.Name)
				continue
			}
			kept = append(kept, e)
		}
		fs.Exported = kept
	}
	var st []status.PeerStatus
	for _, p := range peers {
		p.st.BundlesOut = fs.BundlesOut
		st = append(st, p.st)
	}
	return st, in, out, nil
}

// read reads and checks device.json and frontier.json in dir.
func (p *peerDev) read(dir, uid string) error {
	data, err := os.ReadFile(filepath.Join(dir, "device.json"))
	if err != nil {
		return err
	}
	d, err := ParseDevice(data)
	if err != nil {
		return err
	}
	if d.UID != uid || d.KeyID != p.name {
		return fmt.Errorf("%w: device.json names backpack %q key %s in directory %s", ErrBadPeerFile, d.UID, d.KeyID, p.name)
	}
	p.dev = d
	data, err = os.ReadFile(filepath.Join(dir, "frontier.json"))
	if err != nil {
		return err
	}
	f, err := VerifyFrontier(data, d)
	if err != nil {
		return err
	}
	if f.UID != uid {
		return fmt.Errorf("%w: frontier.json is for backpack %q", ErrBadPeerFile, f.UID)
	}
	p.front = f
	return nil
}

// importFrom imports the bundles in dir/bundles the ledger has not seen.
func (a *Agent) importFrom(ctx context.Context, b *store.Backpack, fs *FolderState, dir string, p *peerDev) (int, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "bundles"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	in := 0
	present := map[string]bool{}
	defer func() {
		// The ledger forgets bundles their device has removed.
		for k := range fs.Seen {
			if name, ok := strings.CutPrefix(k, p.name+"/"); ok && !present[name] {
				delete(fs.Seen, k)
			}
		}
		p.st.BundlesIn = fs.BundlesIn[p.name]
	}()
	for _, e := range entries {
		if _, ok := ParseBundleName(e.Name()); !ok || !e.Type().IsRegular() {
			continue
		}
		present[e.Name()] = true
		path := filepath.Join(dir, "bundles", e.Name())
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		k := p.name + "/" + e.Name()
		seen := fs.Seen[k]
		if seen != nil && seen.Size == info.Size() && seen.ModTime.Equal(info.ModTime()) {
			continue
		}
		sum, err := hashFile(path)
		if err != nil {
			continue
		}
		if seen != nil && seen.Size == info.Size() && seen.SHA256 == sum {
			seen.ModTime = info.ModTime()
			continue
		}
		rec := &SeenBundle{Size: info.Size(), SHA256: sum, ModTime: info.ModTime(), ImportedAt: time.Now().UTC()}
		res, err := b.ImportBundle(ctx, path)
		if re, ok := errors.AsType[*store.RefusedError](err); ok {
			rec.Refused = re.Err.Error()
			a.noteError(path, fmt.Errorf("bundle refused (kept in the quarantine): %w", re.Err))
		} else if err != nil {
			return in, err
		} else {
			rec.Applied, rec.Duplicates = len(res.Applied), res.Duplicates
			rec.Pending, rec.Quarantined, rec.Rejected = len(res.Pending), len(res.Quarantined), len(res.Rejected)
			in += len(res.Applied)
			a.tp.BundlesIn++
			for _, f := range res.Forks {
				a.log.Warn("fork", "bundle", path, "fork", f.String())
			}
			a.log.Info("imported", "bundle", path, "applied", rec.Applied, "duplicates", rec.Duplicates,
				"pending", rec.Pending, "quarantined", rec.Quarantined, "rejected", rec.Rejected)
		}
		fs.Seen[k] = rec
		if rec.Refused == "" {
			if fs.BundlesIn == nil {
				fs.BundlesIn = map[string]int{}
			}
			fs.BundlesIn[p.name]++
		}
	}
	return in, nil
}

// syncExported makes the ledger's list of our bundles match our bundles
// directory: entries whose file is gone are dropped, files the ledger
// does not know (a lost ledger) are read for their event ids, and NextSeq
// moves past every name in use.
func (a *Agent) syncExported(fs *FolderState, mine string) error {
	entries, err := os.ReadDir(filepath.Join(mine, "bundles"))
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, e := range entries {
		seq, ok := ParseBundleName(e.Name())
		if !ok {
			continue
		}
		present[e.Name()] = true
		fs.NextSeq = max(fs.NextSeq, seq+1)
	}
	kept := fs.Exported[:0]
	known := map[string]bool{}
	for _, e := range fs.Exported {
		if present[e.Name] {
			kept = append(kept, e)
			known[e.Name] = true
		}
	}
	fs.Exported = kept
	for _, name := range sortedKeys(present) {
		if known[name] {
			continue
		}
		ids, size, full, err := bundleIDs(filepath.Join(mine, "bundles", name))
		if err != nil {
			a.noteError(name, err)
			continue
		}
		seq, _ := ParseBundleName(name)
		fs.Exported = append(fs.Exported, &ExportedBundle{Name: name, Seq: seq, Size: size, EventIDs: ids, Full: full})
	}
	sort.Slice(fs.Exported, func(i, j int) bool { return fs.Exported[i].Seq < fs.Exported[j].Seq })
	return nil
}

// bundleIDs returns the event ids a bundle file carries, its size, and
// whether it is a full-history bundle (one a new device can join from).
func bundleIDs(path string) ([]string, int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, false, err
	}
	defer f.Close()
	bd, err := bundles.Decode(f, bundles.Limits{})
	if err != nil {
		return nil, 0, false, err
	}
	var ids []string
	for _, l := range bd.Events {
		if e, err := bplog.Parse(l); err == nil {
			ids = append(ids, e.ID)
		}
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, false, err
	}
	return ids, st.Size(), bd.Header.Full() && bd.Header.Files != nil, nil
}

// export writes one bundle with the events ids into our bundles dir.
func (a *Agent) export(b *store.Backpack, key bplog.PrivateKey, fs *FolderState, mine string, ids []string, lineOf map[string][]byte, ours, basis bplog.Frontier) error {
	lines := make([][]byte, len(ids))
	for i, id := range ids {
		lines[i] = lineOf[id]
	}
	now := time.Now()
	h := bundles.Header{UID: a.uid, SenderKeyID: key.ID, SenderPublicKey: key.Public(), Sender: ours, Basis: basis, CreatedAt: pytime.FormatUTC(now)}
	if h.Full() {
		var err error
		if h.Files, err = b.StaticFiles(bundles.Limits{}); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if _, err := bundles.Encode(&buf, h, lines, key.Key, bundles.EncodeOptions{}); err != nil {
		return err
	}
	seq := fs.NextSeq
	name := BundleName(seq, buf.Bytes())
	if err := store.WriteFileAtomic(filepath.Join(mine, "bundles", name), buf.Bytes(), 0o644); err != nil {
		return err
	}
	fs.NextSeq = seq + 1
	fs.BundlesOut++
	fs.Exported = append(fs.Exported, &ExportedBundle{Name: name, Seq: seq, Size: int64(buf.Len()), CreatedAt: now.UTC(), EventIDs: ids, Full: h.Full()})
	a.tp.BundlesOut++
	a.log.Info("exported", "bundle", filepath.Join(mine, "bundles", name), "events", len(ids))
	return nil
}

// writeFrontier writes our frontier.json when what we hold changed (or
// the file is missing).
func (a *Agent) writeFrontier(fs *FolderState, mine string, key bplog.PrivateKey, ours bplog.Frontier) error {
	d := ours.Digest()
	digest := hex.EncodeToString(d[:])
	path := filepath.Join(mine, "frontier.json")
	if _, err := os.Stat(path); err == nil && digest == fs.FrontierDigest {
		return nil
	}
	fs.FrontierSeq++
	pf := PeerFrontier{UID: a.uid, KeyID: key.ID, Seq: fs.FrontierSeq, Frontier: ours, UpdatedAt: pytime.FormatUTC(time.Now())}
	if err := store.WriteFileAtomic(path, pf.Sign(key.Key), 0o644); err != nil {
		return err
	}
	fs.FrontierDigest = digest
	return nil
}

// writeIfChanged writes data to path atomically unless it holds data.
func writeIfChanged(path string, data []byte) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	return store.WriteFileAtomic(path, data, 0o644)
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// count adds a pass's moved events to the throughput.
func (a *Agent) count(in, out int) {
	a.tp.EventsIn += int64(in)
	a.tp.EventsOut += int64(out)
	now := time.Now()
	if in+out > 0 {
		a.recent = append(a.recent, moved{now, in, out})
	}
	cut := 0
	for cut < len(a.recent) && now.Sub(a.recent[cut].at) > 5*time.Minute {
		cut++
	}
	a.recent = a.recent[cut:]
	var i, o int
	for _, m := range a.recent {
		i += m.in
		o += m.out
	}
	a.tp.EventsInPerMin, a.tp.EventsOutPerMin = float64(i)/5, float64(o)/5
}
