package merkle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// errEscapes reports a path that, after resolving symlinks, names a
// location outside the backpack directory.
var errEscapes = errors.New("resolves outside the backpack directory")

// errNotRegular reports a path that names something other than a regular
// file.
var errNotRegular = errors.New("not a regular file")

// tree is an open backpack directory. Files are only ever opened through
// root, so nothing outside the directory is read even if links change
// while we look. real is used to decide, as the reference does with
// Path.resolve(), where a symlink finally points.
type tree struct {
	root *os.Root
	real string // absolute path of the directory, symlinks resolved
	buf  []byte // read buffer, reused across files
}

func openTree(dir string) (*tree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(real)
	if err != nil {
		return nil, err
	}
	return &tree{root: r, real: real}, nil
}

func (t *tree) Close() error { return t.root.Close() }

// resolve returns the root-relative, "/"-separated path that rel finally
// names once every symlink along it is resolved, like the reference's
// (root / rel).resolve(); errEscapes if that is outside the root. A path
// that does not exist gives an error satisfying errors.Is(err,
// fs.ErrNotExist).
func (t *tree) resolve(rel string) (string, error) {
	p, err := filepath.EvalSymlinks(filepath.Join(t.real, filepath.FromSlash(rel)))
	if err != nil {
		return "", err
	}
	r, err := filepath.Rel(t.real, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", errEscapes
	}
	return filepath.ToSlash(r), nil
}

// hashFile reads the regular file at the resolved path rel and returns its
// SHA-256 and size. With a cache, a file whose path, size and modification
// time the cache knows is not read (hashed reports whether it was). The
// size is the number of bytes hashed, so the result is consistent even if
// the file changes while it is read; such a result is not cached.
func (t *tree) hashFile(rel string, cache HashCache) (h Hash, size int64, hashed bool, err error) {
	f, err := t.root.OpenFile(rel, openFlagsRead, 0)
	if err != nil {
		return Hash{}, 0, false, err
	}
	defer f.Close() // read only: a close error cannot lose data
	fi, err := f.Stat()
	if err != nil {
		return Hash{}, 0, false, err
	}
	if !fi.Mode().IsRegular() {
		return Hash{}, 0, false, errNotRegular
	}
	key := CacheKey{Path: rel, Size: fi.Size(), ModTime: fi.ModTime()}
	if cache != nil {
		if h, ok := cache.Lookup(key); ok {
			return h, fi.Size(), false, nil
		}
	}
	if t.buf == nil {
		t.buf = make([]byte, 256<<10)
	}
	d := sha256.New()
	for {
		n, err := f.Read(t.buf)
		d.Write(t.buf[:n])
		size += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return Hash{}, 0, true, err
		}
	}
	d.Sum(h[:0])
	if cache != nil && size == fi.Size() {
		cache.Store(key, h)
	}
	return h, size, true, nil
}

// SkipReason says why a path under the root is not in the manifest
// although it is not excluded.
type SkipReason string

// Reasons for skipping a path, following the reference's walk.
const (
	// SkipEscapingSymlink: a symlink whose target is outside the root.
	// The reference skips it with a warning; Verify counts it as a
	// problem (the reference's compliance suite sees it as a phantom).
	SkipEscapingSymlink SkipReason = "escaping_symlink"
	// SkipBrokenSymlink: a symlink that leads nowhere (or loops).
	SkipBrokenSymlink SkipReason = "broken_symlink"
	// SkipSymlinkedDir: a symlink to a directory, which is not descended.
	SkipSymlinkedDir SkipReason = "symlinked_dir"
	// SkipNotRegular: a named pipe, socket or device.
	SkipNotRegular SkipReason = "not_regular"
)

// Skipped is a path the walk saw and left out of the manifest.
type Skipped struct {
	Path   string     `json:"path"`
	Reason SkipReason `json:"reason"`
	Detail string     `json:"detail,omitempty"` // e.g. the symlink's target
}

// scan is the result of walking a tree.
type scan struct {
	files       []Entry // sorted by path
	skipped     []Skipped
	badNames    []string    // names that are not valid UTF-8 (cannot be manifested)
	errs        []walkError // I/O errors
	hashed      int
	hashedBytes int64
}

// walkError is an I/O error met at Path during a walk.
type walkError struct {
	Path string
	Err  error
}

// failed returns the paths of s.errs.
func (s *scan) failed() map[string]bool {
	m := make(map[string]bool, len(s.errs))
	for _, e := range s.errs {
		m[e.Path] = true
	}
	return m
}

// err joins s.errs, or returns nil.
func (s *scan) err() error {
	errs := make([]error, len(s.errs))
	for i, e := range s.errs {
		errs[i] = fmt.Errorf("%s: %w", e.Path, e.Err)
	}
	return errors.Join(errs...)
}

// walk lists every regular file under the root the way the reference's
// build_manifest does (SPEC.md §5.1): hidden files and any depth included;
// symlinks to files inside the root listed under the link's path with
// the target's bytes; symlinked directories not descended; escaping and
// broken symlinks and special files skipped. Paths in exclude are left
// out silently. I/O errors are collected, not fatal.
func (t *tree) walk(exclude map[string]bool, cache HashCache) *scan {
	s := new(scan)
	err := fs.WalkDir(t.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			s.errs = append(s.errs, walkError{p, err})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if p == "." {
			return nil
		}
		if !utf8.ValidString(p) {
			s.badNames = append(s.badNames, p)
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || exclude[p] {
			return nil
		}
		target := p
		if d.Type()&fs.ModeSymlink != 0 {
			var skip SkipReason
			target, skip, err = t.followLink(p)
			if err != nil {
				s.errs = append(s.errs, walkError{p, err})
				return nil
			}
			if skip != "" {
				link, _ := t.root.Readlink(p)
				s.skipped = append(s.skipped, Skipped{Path: p, Reason: skip, Detail: "-> " + link})
				return nil
			}
		} else if !d.Type().IsRegular() {
			s.skipped = append(s.skipped, Skipped{Path: p, Reason: SkipNotRegular, Detail: d.Type().String()})
			return nil
		}
		h, size, hashed, err := t.hashFile(target, cache)
		switch {
		case errors.Is(err, errNotRegular):
			// Replaced by something else since ReadDir looked.
			s.skipped = append(s.skipped, Skipped{Path: p, Reason: SkipNotRegular})
			return nil
		case err != nil:
			s.errs = append(s.errs, walkError{p, err})
			return nil
		}
		if hashed {
			s.hashed++
			s.hashedBytes += size
		}
		s.files = append(s.files, Entry{Path: p, SHA256: h.String(), Size: size})
		return nil
	})
	if err != nil {
		s.errs = append(s.errs, walkError{".", err})
	}
	SortEntries(s.files)
	return s
}

// followLink classifies the symlink at p: the resolved path of a regular
// file to read, or the reason to skip it.
func (t *tree) followLink(p string) (string, SkipReason, error) {
	target, err := t.resolve(p)
	switch {
	case errors.Is(err, errEscapes):
		return "", SkipEscapingSymlink, nil
	case errors.Is(err, fs.ErrPermission):
		return "", "", err
	case err != nil:
		// Python's is_file() is false for a dangling or looping link
		// (ENOENT, ENOTDIR, ELOOP; Go reports a loop as "too many links").
		return "", SkipBrokenSymlink, nil
	}
	fi, err := t.root.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", SkipBrokenSymlink, nil
	case err != nil:
		return "", "", err
	case fi.IsDir():
		return "", SkipSymlinkedDir, nil
	case !fi.Mode().IsRegular():
		return "", SkipNotRegular, nil
	}
	return target, "", nil
}
