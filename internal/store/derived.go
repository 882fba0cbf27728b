package store

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/backpack-field/backpack/internal/canon"

	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/merkle"
)

// fileCache supplies known digests to merkle.Build: events.ndjson's
// running hash (never re-read from disk), files the store itself just
// wrote, and files seen unchanged (same path, size and mtime) by an
// earlier build in this process.
type fileCache struct {
	seen    merkle.MapCache
	logSize int64
	logHash merkle.Hash
}

// remember records h, the digest of the file just written to abs, and
// returns the key it recorded it under (ok false when abs cannot be read).
func (c *fileCache) remember(abs, rel string, h merkle.Hash) (merkle.CacheKey, bool) {
	fi, err := os.Stat(abs)
	if err != nil {
		return merkle.CacheKey{}, false
	}
	k := merkle.CacheKey{Path: rel, Size: fi.Size(), ModTime: fi.ModTime()}
	c.seen.Store(k, h)
	return k, true
}

// The state cache's files are the largest the manifest covers after the
// log, and a writer's open checks the manifest: so that it need not hash
// them again, the store notes their digests with their sizes and
// modification times in the device directory (cache.sum), as it noted
// them in memory, and a later open takes each digest whose file still has
// that size and time. Like any such stat cache it trusts that a file with
// the same size and time has the same bytes; `backpack verify` hashes
// everything.
const cacheSumName = "cache.sum"

const maxCacheSum = 16 << 10

// cacheFiles are the state cache's files, relative to the backpack.
var cacheFiles = []string{CachePath, CacheIndexPath, CacheBasePath}

// noteCacheSum writes cache.sum for the state cache files whose digests
// the file cache knows (the last manifest build hashed them, or the store
// wrote them), unless it already says exactly that.
func (b *Backpack) noteCacheSum() {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return
	}
	var files []canon.Value
	for _, rel := range cacheFiles {
		fi, err := os.Stat(b.path(rel))
		if err != nil {
			continue
		}
		k := merkle.CacheKey{Path: rel, Size: fi.Size(), ModTime: fi.ModTime()}
		h, ok := b.files.seen.Lookup(k)
		if !ok {
			continue
		}
		var o canon.ObjectBuilder
		o.Set("path", canon.StringValue(rel)).
			Set("size", canon.IntValue(k.Size)).
			Set("mtime_ns", canon.IntValue(k.ModTime.UnixNano())).
			Set("sha256", canon.StringValue(h.String()))
		files = append(files, o.Value())
	}
	var o canon.ObjectBuilder
	o.Set("files", canon.ArrayValue(files...))
	data := append(canon.MustEncode(o.Value()), '\n')
	if bytes.Equal(data, b.cacheSumNote) {
		return
	}
	if err := os.MkdirAll(dev, 0o700); err != nil {
		return
	}
	if err := writeFileAtomic(filepath.Join(dev, cacheSumName), data, 0o600); err != nil {
		b.log.Debug("cache.sum not written", "err", err)
		return
	}
	b.cacheSumNote = data
}

// loadCacheSum hands the digests in cache.sum to the file cache for the
// state cache files that still have the size and time it notes.
func (b *Backpack) loadCacheSum() {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return
	}
	data, err := os.ReadFile(filepath.Join(dev, cacheSumName))
	if err != nil || len(data) > maxCacheSum {
		return
	}
	v, err := canon.Limits{MaxSize: maxCacheSum}.Parse(data)
	if err != nil {
		return
	}
	b.cacheSumNote = data
	for _, f := range v.Field("files").Elems() {
		rel := f.Field("path").Str()
		if !slices.Contains(cacheFiles, rel) {
			continue
		}
		size, _ := f.Field("size").Int64()
		mtime, _ := f.Field("mtime_ns").Int64()
		sum, err := hex.DecodeString(f.Field("sha256").Str())
		if err != nil || len(sum) != len(merkle.Hash{}) {
			continue
		}
		fi, err := os.Stat(b.path(rel))
		if err != nil || fi.Size() != size || fi.ModTime().UnixNano() != mtime {
			continue
		}
		var h merkle.Hash
		copy(h[:], sum)
		b.files.seen.Store(merkle.CacheKey{Path: rel, Size: size, ModTime: time.Unix(0, mtime)}, h)
	}
}

// Lookup implements merkle.HashCache.
func (c *fileCache) Lookup(k merkle.CacheKey) (merkle.Hash, bool) {
	if k.Path == EventsPath {
		return c.logHash, k.Size == c.logSize
	}
	return c.seen.Lookup(k)
}

// Store implements merkle.HashCache.
func (c *fileCache) Store(k merkle.CacheKey, h merkle.Hash) {
	if k.Path != EventsPath {
		c.seen.Store(k, h)
	}
}

// buildManifestLocked walks the backpack and returns its manifest, using
// the running log hash for events.ndjson.
func (b *Backpack) buildManifestLocked() (merkle.Manifest, merkle.Hash, error) {
	b.files.logSize = b.logSize
	copy(b.files.logHash[:], b.logHash.Sum(nil))
	res, err := merkle.Build(b.dir, merkle.BuildOptions{
		Cache:        &b.files,
		CreatedAtUTC: pytime.FormatUTC(b.opts.Now()),
	})
	if err != nil {
		return merkle.Manifest{}, merkle.Hash{}, err
	}
	for _, sk := range res.Skipped {
		b.log.Warn("not in the manifest", "path", sk.Path, "reason", sk.Reason)
	}
	return res.Manifest, res.Root, nil
}

// writeDerivedLocked rebuilds manifest.json, merkle_root.txt and (with a
// key) manifest.sig. Each is replaced atomically; the order (manifest,
// root, signature) means a crash leaves at worst a stale root or
// signature, which the next writer's open detects and rebuilds.
func (b *Backpack) writeDerivedLocked() error {
	m, root, err := b.buildManifestLocked()
	if err != nil {
		return err
	}
	data, err := m.Encode()
	if err != nil {
		return err
	}
	files := []fileWrite{
		{b.path(ManifestPath), data, 0o644},
		{b.path(MerkleRootPath), merkle.EncodeRootFile(root), 0o644},
	}
	if b.signer != nil {
		sig, err := merkle.SignManifest(b.signer.Key, b.signer.KeyID, root.String(), pytime.FormatUTC(b.opts.Now()))
		if err != nil {
			return err
		}
		files = append(files, fileWrite{b.path(ManifestSigPath), sig, 0o644})
	} else {
		b.log.Warn("no device key: manifest.sig not re-signed and now stale")
	}
	return writeFilesAtomic(files)
}

// refreshDerivedIfStale rebuilds the derived files when they do not
// describe the backpack as it is (a crash between an append and the
// rebuild, or another tool's write). It compares the manifest with a fresh
// build, ignoring created_at_utc, and checks merkle_root.txt and the
// signature's root.
func (b *Backpack) refreshDerivedIfStale() error {
	m, root, err := b.buildManifestLocked()
	if err != nil {
		return err
	}
	stale := ""
	if data, err := os.ReadFile(b.path(ManifestPath)); err != nil {
		stale = "manifest.json missing"
	} else if old, err := merkle.ParseManifest(data); err != nil {
		stale = "manifest.json unreadable"
	} else if oldRoot, err := old.Root(); err != nil || oldRoot != root || len(old.Files) != len(m.Files) {
		stale = "manifest.json out of date"
	}
	if stale == "" {
		if data, err := os.ReadFile(b.path(MerkleRootPath)); err != nil {
			stale = "merkle_root.txt missing"
		} else if h, err := merkle.ParseRootFile(data); err != nil || h != root {
			stale = "merkle_root.txt out of date"
		}
	}
	if stale == "" && b.signer != nil {
		if data, err := os.ReadFile(b.path(ManifestSigPath)); err != nil {
			stale = "manifest.sig missing"
		} else if rec, err := merkle.ParseManifestSig(data); err != nil || rec.MerkleRoot != root.String() {
			stale = "manifest.sig signs another root"
		}
	}
	if stale == "" {
		return nil
	}
	b.log.Info("rebuilding derived files", "reason", stale)
	return b.writeDerivedLocked()
}

// ManifestResult says what RebuildManifest wrote.
type ManifestResult struct {
	Files    int    `json:"files"`
	Root     string `json:"merkle_root"`
	SignedBy string `json:"signed_by,omitempty"`
}

// RebuildManifest writes the state cache if it is behind, then rebuilds
// and re-signs the derived files unconditionally.
func (b *Backpack) RebuildManifest() (*ManifestResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writableLocked(); err != nil {
		return nil, err
	}
	if b.sinceCache > 0 && b.entries >= b.opts.CacheEvery {
		if err := b.writeCacheLocked(); err != nil {
			return nil, err
		}
	}
	if err := b.writeDerivedLocked(); err != nil {
		return nil, err
	}
	m, root, err := b.buildManifestLocked()
	if err != nil {
		return nil, err
	}
	res := &ManifestResult{Files: len(m.Files), Root: root.String()}
	if b.signer != nil {
		res.SignedBy = b.signer.KeyID
	}
	return res, b.publishLocked()
}
