package merkle

import (
	"fmt"
	"time"
)

// DefaultExclude returns the root-relative paths that are never in a
// manifest (SPEC.md §5.1): the seal files themselves and the private key
// file that `provara init` may leave inside the backpack. Only these exact
// paths are excluded; a manifest.json in a subdirectory is listed.
func DefaultExclude() []string {
	return []string{"manifest.json", "manifest.sig", "merkle_root.txt", "identity/private_keys.json"}
}

// CacheKey identifies a file's content the way a stat-based cache can: by
// where it is, how long it is and when it was last modified.
type CacheKey struct {
	// Path is the root-relative path of the file that is read: for a
	// symlink, its resolved target.
	Path    string
	Size    int64
	ModTime time.Time
}

// A HashCache supplies SHA-256 digests that are already known, so that
// Build need not read the file again. Build calls Lookup for every regular
// file, and Store for every file it had to hash (unless the file changed
// while it was read). Both are called from Build's goroutine only.
//
// Lookup must return a digest only when it is sure of it. A writer that
// hashed what it wrote (the event log, hashed incrementally as it is
// appended) may answer for its own file whenever the size matches. A cache
// of earlier walks keyed by size and modification time has the usual blind
// spot of such caches: a file rewritten with the same size within the
// file system's timestamp granularity looks unchanged. Verify never uses
// a cache.
type HashCache interface {
	Lookup(k CacheKey) (Hash, bool)
	Store(k CacheKey, h Hash)
}

// MapCache is a HashCache in memory, keyed by path, size and modification
// time (to the nanosecond). The zero value is ready to use. It is not safe
// for concurrent use.
type MapCache struct {
	m map[mapKey]Hash
}

type mapKey struct {
	path    string
	size    int64
	modTime int64 // UnixNano: comparable, unlike time.Time's location
}

func keyOf(k CacheKey) mapKey { return mapKey{k.Path, k.Size, k.ModTime.UnixNano()} }

// Lookup implements HashCache.
func (c *MapCache) Lookup(k CacheKey) (Hash, bool) {
	h, ok := c.m[keyOf(k)]
	return h, ok
}

// Store implements HashCache.
func (c *MapCache) Store(k CacheKey, h Hash) {
	if c.m == nil {
		c.m = make(map[mapKey]Hash)
	}
	c.m[keyOf(k)] = h
}

// Len returns the number of digests held.
func (c *MapCache) Len() int { return len(c.m) }

// BuildOptions configure Build. The zero value excludes DefaultExclude,
// hashes every file and leaves created_at_utc empty.
type BuildOptions struct {
	// Exclude lists root-relative paths to leave out. nil means
	// DefaultExclude(); an empty, non-nil slice excludes nothing.
	Exclude []string
	// Cache, if not nil, supplies digests of files it knows unchanged and
	// records the ones Build computes.
	Cache HashCache
	// CreatedAtUTC is the manifest's created_at_utc, a timestamp in the
	// reference's format (internal/pytime.FormatUTC(time.Now())).
	CreatedAtUTC string
}

// BuildResult is what Build found.
type BuildResult struct {
	Manifest Manifest  // the manifest of the directory as it is
	Root     Hash      // the Merkle root of Manifest.Files
	Skipped  []Skipped // paths left out other than the excluded ones
	// Hashed counts the files that were read and hashed (cache misses),
	// HashedBytes their bytes.
	Hashed      int
	HashedBytes int64
}

// Build walks the backpack directory dir and returns its manifest and
// Merkle root, as the reference's build_manifest does (SPEC.md §5.1): every
// regular file under dir, hidden files and any depth included, except the
// excluded paths; a symlink to a file inside dir is listed under its own
// path with the target's bytes and size; symlinked directories are not
// descended; symlinks that lead outside dir, dangling symlinks and special
// files are skipped and listed in Skipped. Entries are sorted by path in
// byte order. All reads go through an os.Root on dir.
//
// Build fails if a file or directory cannot be read (a manifest that
// silently lacks a file would be wrong), or if a name is not valid UTF-8
// (the reference cannot encode it either).
func Build(dir string, opts BuildOptions) (*BuildResult, error) {
	exclude := opts.Exclude
	if exclude == nil {
		exclude = DefaultExclude()
	}
	ex := make(map[string]bool, len(exclude))
	for _, p := range exclude {
		ex[p] = true
	}
	t, err := openTree(dir)
	if err != nil {
		return nil, fmt.Errorf("merkle: build: %w", err)
	}
	defer t.Close()
	s := t.walk(ex, opts.Cache)
	if len(s.errs) > 0 {
		return nil, fmt.Errorf("merkle: build %s: %w", dir, s.err())
	}
	if len(s.badNames) > 0 {
		return nil, fmt.Errorf("merkle: build %s: file name %q is not valid UTF-8", dir, s.badNames[0])
	}
	m, err := NewManifest(opts.CreatedAtUTC, s.files)
	if err != nil {
		panic("bug: walk produced unsorted entries: " + err.Error())
	}
	root, err := RootOf(s.files)
	if err != nil {
		panic("bug: walk produced an unencodable entry: " + err.Error())
	}
	return &BuildResult{Manifest: m, Root: root, Skipped: s.skipped, Hashed: s.hashed, HashedBytes: s.hashedBytes}, nil
}
