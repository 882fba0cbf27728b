package check

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/merkle"
	"github.com/backpack-field/backpack/reducer"
)

// manifest checks manifest.json against the disk and merkle_root.txt. It
// returns the root recomputed from the manifest ("" when unusable).
func (c *checker) manifest(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, store.ManifestPath))
	if err != nil {
		c.add(Finding{Severity: Fail, Area: "manifest", Path: store.ManifestPath, Message: "missing: run `backpack manifest` to rebuild it"})
		return ""
	}
	m, err := merkle.ParseManifest(data)
	if err != nil {
		c.add(Finding{Severity: Fail, Area: "manifest", Path: store.ManifestPath, Message: err.Error()})
		return ""
	}
	stored := ""
	if b, err := os.ReadFile(filepath.Join(dir, store.MerkleRootPath)); err == nil {
		stored = merkle.StripSpace(string(b))
	} else {
		c.add(Finding{Severity: Fail, Area: "merkle", Path: store.MerkleRootPath, Message: "missing"})
	}
	rep := merkle.Verify(dir, m, stored)
	lagging := logAppendedAfter(dir, m, rep)
	onlyTemps := onlyTempPhantoms(rep)
	for _, p := range rep.Problems {
		if lagging != "" && (p.Path == store.EventsPath || p.Kind == merkle.DiskRootMismatch) {
			continue
		}
		if p.Kind == merkle.PhantomFile && isTempName(p.Path) {
			c.add(Finding{Severity: Warn, Area: "manifest", Path: p.Path, Message: "temp file left by an interrupted backpack write; the next backpack write removes it"})
			continue
		}
		if p.Kind == merkle.DiskRootMismatch && onlyTemps {
			continue // caused by the temp files alone
		}
		c.add(Finding{Severity: Fail, Area: "manifest", Path: p.Path, Message: p.String()})
	}
	if lagging != "" {
		c.add(Finding{Severity: Warn, Area: "manifest", Path: store.EventsPath, Message: lagging})
	}
	for _, p := range rep.Warnings {
		c.add(Finding{Severity: Warn, Area: "manifest", Path: p.Path, Message: p.String()})
	}
	c.r.MerkleRoot = rep.ManifestRoot
	return rep.ManifestRoot
}

// manifestSig checks manifest.sig: its signature and that it signs the
// current root.
func (c *checker) manifestSig(dir string, reg *bplog.Registry, root string) {
	data, err := os.ReadFile(filepath.Join(dir, store.ManifestSigPath))
	if errors.Is(err, os.ErrNotExist) {
		c.r.ManifestSig = "absent"
		c.add(Finding{Severity: c.authSeverity(), Area: "manifest_sig", Path: store.ManifestSigPath, Message: "no manifest.sig: the Merkle root is not signed"})
		return
	}
	rec, err := merkle.ParseManifestSig(data)
	if err != nil {
		c.r.ManifestSig = "unreadable"
		c.add(Finding{Severity: Fail, Area: "manifest_sig", Path: store.ManifestSigPath, Message: err.Error()})
		return
	}
	pub, kerr := reg.Resolve(rec.KeyID)
	if kerr != nil && !errors.Is(kerr, bplog.ErrRevokedKey) {
		c.r.ManifestSig = "unknown key"
		c.add(Finding{Severity: Fail, Area: "manifest_sig", Path: store.ManifestSigPath, Message: fmt.Sprintf("signed by key %s, which identity/keys.json does not list", rec.KeyID)})
		return
	}
	err = merkle.VerifyManifestSig(rec, pub, root)
	var stale *merkle.StaleRootError
	switch {
	case errors.As(err, &stale):
		c.r.ManifestSig = "stale"
		c.add(Finding{Severity: c.authSeverity(), Area: "manifest_sig", Path: store.ManifestSigPath, Message: fmt.Sprintf("signature by %s is valid but signs Merkle root %s, not the current %s: the manifest changed after it was signed (run `backpack manifest` to re-sign)", rec.KeyID, short(rec.MerkleRoot), short(root))})
	case err != nil:
		c.r.ManifestSig = "invalid"
		c.add(Finding{Severity: Fail, Area: "manifest_sig", Path: store.ManifestSigPath, Message: fmt.Sprintf("signature by %s does not verify: %v", rec.KeyID, err)})
	case kerr != nil:
		c.r.ManifestSig = "revoked key"
		c.add(Finding{Severity: Fail, Area: "manifest_sig", Path: store.ManifestSigPath, Message: fmt.Sprintf("signed by revoked key %s", rec.KeyID)})
	default:
		c.r.ManifestSig = "ok"
	}
}

// authSeverity is the severity of a manifest whose Merkle root is not
// signed (see Options.Strict).
func (c *checker) authSeverity() string {
	if c.strict {
		return Fail
	}
	return Warn
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// cacheProbe checks the state cache against the replay: at the cache's
// log offset the replayed state must hash to the cached state's hash, and
// the log's prefix must be the one the cache was made from.
type cacheProbe struct {
	c      *checker
	offset int64
	want   string
	seen   bool
	absent bool
}

func loadCacheProbe(dir string, c *checker) *cacheProbe {
	p := &cacheProbe{c: c, offset: -1}
	info, err := store.ReadCacheInfo(dir)
	if errors.Is(err, os.ErrNotExist) {
		p.absent = true
		c.r.StateCache = "absent"
		return p
	}
	if err != nil {
		c.r.StateCache = "unreadable"
		c.add(Finding{Severity: Fail, Area: "state_cache", Path: store.CachePath, Message: err.Error() + " (it is rebuilt on the next write)"})
		return p
	}
	p.offset, p.want = info.Offset, info.StateHash
	if p.offset == 0 {
		p.seen = true
	}
	return p
}

func (p *cacheProbe) at(end int64, st *reducer.State) {
	if p.offset < 0 || end != p.offset || p.seen {
		return
	}
	p.seen = true
	got, err := st.StateHash()
	if err != nil || got != p.want {
		p.c.r.StateCache = "mismatch"
		p.c.add(Finding{Severity: Fail, Area: "state_cache", Path: store.CachePath, Message: fmt.Sprintf("cached state at byte %d hashes to %s, replay gives %s", p.offset, short(p.want), short(got))})
		return
	}
	p.c.r.StateCache = "ok"
}

func (p *cacheProbe) finish() {
	if p.offset >= 0 && !p.seen {
		p.c.r.StateCache = "mismatch"
		p.c.add(Finding{Severity: Fail, Area: "state_cache", Path: store.CachePath, Message: fmt.Sprintf("cache claims %d bytes of log, which do not end at a line of this log", p.offset)})
	}
}

// checkpointProbe checks every checkpoint: signature, and that the replay
// reaches the same state hash at its event count.
type checkpointProbe struct {
	c    *checker
	byN  map[int64][]*store.Checkpoint
	done map[string]bool
}

func loadCheckpoints(dir string, reg *bplog.Registry, c *checker) *checkpointProbe {
	p := &checkpointProbe{c: c, byN: map[int64][]*store.Checkpoint{}, done: map[string]bool{}}
	names, err := store.ListCheckpoints(dir)
	if err != nil {
		c.add(Finding{Severity: Fail, Area: "checkpoint", Message: err.Error()})
		return p
	}
	for _, n := range names {
		rel := store.CheckpointsDir + "/" + n
		data, err := os.ReadFile(filepath.Join(dir, store.CheckpointsDir, n))
		if err != nil {
			c.add(Finding{Severity: Fail, Area: "checkpoint", Path: rel, Message: err.Error()})
			continue
		}
		cp, err := store.ParseCheckpoint(n, data)
		if err != nil {
			c.add(Finding{Severity: Fail, Area: "checkpoint", Path: rel, Message: err.Error()})
			continue
		}
		if err := cp.Verify(reg); err != nil {
			c.add(Finding{Severity: Fail, Area: "checkpoint", Path: rel, Message: fmt.Sprintf("signature by %s: %v", cp.KeyID, err)})
		}
		p.byN[cp.EventCount] = append(p.byN[cp.EventCount], cp)
		c.r.Checkpoints = append(c.r.Checkpoints, rel)
	}
	return p
}

func (p *checkpointProbe) at(count, end int64, st *reducer.State) {
	cps := p.byN[count]
	if len(cps) == 0 {
		return
	}
	got, err := st.StateHash()
	for _, cp := range cps {
		if p.done[cp.Name] {
			continue
		}
		if cp.LogOffset >= 0 && cp.LogOffset != end {
			continue // a lossless checkpoint is checked at its own offset
		}
		p.done[cp.Name] = true
		want, werr := cp.StateHash()
		if err != nil || werr != nil || got != want {
			p.c.add(Finding{Severity: Fail, Area: "checkpoint", Path: store.CheckpointsDir + "/" + cp.Name, Message: fmt.Sprintf("state after %d events replays to %s, the checkpoint says %s", count, short(got), short(want))})
		}
	}
}

func (p *checkpointProbe) finish() {
	for n, cps := range p.byN {
		for _, cp := range cps {
			if !p.done[cp.Name] {
				p.c.add(Finding{Severity: Fail, Area: "checkpoint", Path: store.CheckpointsDir + "/" + cp.Name, Message: fmt.Sprintf("the log never reaches the checkpoint's position (%d events%s)", n, strings.Repeat("", 0))})
			}
		}
	}
}

// logAppendedAfter recognises the one way the manifest can be behind the
// log without anything being wrong: the log still begins with exactly the
// bytes the manifest describes, and only whole lines were appended after
// them (a write interrupted between the log's fsync and the manifest's
// rename, or another program appending). It returns a message for that
// case, "" otherwise. The appended lines are checked like every other line.
func logAppendedAfter(dir string, m merkle.Manifest, rep *merkle.Report) string {
	other := false
	for _, p := range rep.Problems {
		if p.Path != store.EventsPath && p.Kind != merkle.DiskRootMismatch {
			other = true
		}
	}
	if other || !rep.Has(merkle.SHA256Mismatch, store.EventsPath) && !rep.Has(merkle.SizeMismatch, store.EventsPath) {
		return ""
	}
	var entry *merkle.Entry
	for i := range m.Files {
		if m.Files[i].Path == store.EventsPath {
			entry = &m.Files[i]
		}
	}
	if entry == nil {
		return ""
	}
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(store.EventsPath)))
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= entry.Size {
		return ""
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, entry.Size)); err != nil {
		return ""
	}
	if hex.EncodeToString(h.Sum(nil)) != entry.SHA256 {
		return ""
	}
	tail := make([]byte, st.Size()-entry.Size)
	if _, err := f.ReadAt(tail, entry.Size); err != nil || tail[len(tail)-1] != '\n' {
		return ""
	}
	return fmt.Sprintf("the manifest describes the log's first %d bytes; %d bytes of whole lines were appended after it (an interrupted write, or another program appending); the next backpack write rebuilds the manifest", entry.Size, len(tail))
}

// isTempName reports whether a path is one of backpack's own temp files
// (".<name>.tmp-<random>", written then renamed).
func isTempName(p string) bool {
	base := filepath.Base(p)
	return strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-")
}

// onlyTempPhantoms reports whether the report's problems are backpack's
// own temp files (at least one) and the disk root mismatch they cause.
func onlyTempPhantoms(rep *merkle.Report) bool {
	temps := 0
	for _, p := range rep.Problems {
		switch {
		case p.Kind == merkle.PhantomFile && isTempName(p.Path):
			temps++
		case p.Kind != merkle.DiskRootMismatch:
			return false
		}
	}
	return temps > 0
}
