package merkle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

// TestBuildReproducesReferenceBackpacks builds copies of the reference
// backpacks (and the read-only originals) and expects their stored
// manifest bytes, given the stored created_at_utc, and the disk-walk root
// of expected.json.
func TestBuildReproducesReferenceBackpacks(t *testing.T) {
	for _, name := range backpacks {
		t.Run(name, func(t *testing.T) {
			want := expected(t, name)
			orig := conformance.Path(t, name)
			stored := mustReadFile(t, orig, "manifest.json")
			sm, err := merkle.ParseManifest(stored)
			if err != nil {
				t.Fatal(err)
			}
			for label, dir := range map[string]string{"copy": copyTree(t, orig), "original": orig} {
				res, err := merkle.Build(dir, merkle.BuildOptions{CreatedAtUTC: sm.CreatedAtUTC})
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				if res.Root.String() != want.MerkleRootFromDiskWalk {
					t.Errorf("%s: root %s, want %s", label, res.Root, want.MerkleRootFromDiskWalk)
				}
				enc, err := res.Manifest.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc, stored) {
					t.Errorf("%s: manifest\n%s\nwant\n%s", label, enc, stored)
				}
				if len(res.Skipped) != 0 || res.Hashed != want.ManifestFileCount {
					t.Errorf("%s: skipped %v, hashed %d", label, res.Skipped, res.Hashed)
				}
			}
		})
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func writeFile(t testing.TB, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, dir, rel string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
		t.Fatal(err)
	}
}

// TestBuildWalkRules exercises SPEC.md §5.1 on a made-up tree.
func TestBuildWalkRules(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, outside, "secret", "outside")
	dir := t.TempDir()
	files := map[string]string{
		"a/x":                        "ax",
		"a-b/x":                      "abx",
		"a.b/x":                      "a.bx",
		"a0":                         "a0",
		".hidden":                    "h",
		"deep/1/2/3/4/.keep":         "",
		"sub/manifest.json":          "listed: not at the root",
		"identity/keys.json":         "{}",
		"line\nbreak":                "nl",
		"é":                          "e-acute",
		"manifest.json":              "excluded",
		"manifest.sig":               "excluded",
		"merkle_root.txt":            "excluded",
		"identity/private_keys.json": "excluded",
	}
	for p, c := range files {
		writeFile(t, dir, p, c)
	}
	symlink(t, "a0", dir, "link-rel")                                       // to a file inside
	symlink(t, filepath.Join(dir, "a", "x"), dir, "link-abs")               // absolute, inside
	symlink(t, "../a0", dir, "deep/link-up")                                // relative, up but inside
	symlink(t, "a", dir, "dirlink")                                         // directory: not descended
	symlink(t, filepath.Join(outside, "secret"), dir, "esc-abs")            // escapes
	symlink(t, "../../"+filepath.Base(outside)+"/secret", dir, "a/esc-rel") // escapes (relative)
	symlink(t, "nowhere", dir, "dangling")
	symlink(t, "loop2", dir, "loop1")
	symlink(t, "loop1", dir, "loop2")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	res, err := merkle.Build(dir, merkle.BuildOptions{CreatedAtUTC: "2026-01-01T00:00:00+00:00"})
	if err != nil {
		t.Fatal(err)
	}
	want := []merkle.Entry{
		{Path: ".hidden", SHA256: sha("h"), Size: 1},
		{Path: "a-b/x", SHA256: sha("abx"), Size: 3},
		{Path: "a.b/x", SHA256: sha("a.bx"), Size: 4},
		{Path: "a/x", SHA256: sha("ax"), Size: 2},
		{Path: "a0", SHA256: sha("a0"), Size: 2},
		{Path: "deep/1/2/3/4/.keep", SHA256: sha(""), Size: 0},
		{Path: "deep/link-up", SHA256: sha("a0"), Size: 2},
		{Path: "identity/keys.json", SHA256: sha("{}"), Size: 2},
		{Path: "line\nbreak", SHA256: sha("nl"), Size: 2},
		{Path: "link-abs", SHA256: sha("ax"), Size: 2},
		{Path: "link-rel", SHA256: sha("a0"), Size: 2},
		{Path: "sub/manifest.json", SHA256: sha("listed: not at the root"), Size: 23},
		{Path: "é", SHA256: sha("e-acute"), Size: 7},
	}
	if !slices.EqualFunc(res.Manifest.Files, want, entryEqual) {
		t.Errorf("files:\n%s\nwant:\n%s", entryLines(res.Manifest.Files), entryLines(want))
	}
	root, _ := merkle.RootOf(want)
	if res.Root != root || res.Manifest.FileCount != int64(len(want)) {
		t.Errorf("root %s, file_count %d", res.Root, res.Manifest.FileCount)
	}
	gotSkips := map[string]merkle.SkipReason{}
	for _, s := range res.Skipped {
		gotSkips[s.Path] = s.Reason
	}
	wantSkips := map[string]merkle.SkipReason{
		"dirlink":   merkle.SkipSymlinkedDir,
		"esc-abs":   merkle.SkipEscapingSymlink,
		"a/esc-rel": merkle.SkipEscapingSymlink,
		"dangling":  merkle.SkipBrokenSymlink,
		"loop1":     merkle.SkipBrokenSymlink,
		"loop2":     merkle.SkipBrokenSymlink,
		"fifo":      merkle.SkipNotRegular,
	}
	if len(gotSkips) != len(wantSkips) {
		t.Errorf("skipped %v, want %v", res.Skipped, wantSkips)
	}
	for p, r := range wantSkips {
		if gotSkips[p] != r {
			t.Errorf("skip %q: %q, want %q", p, gotSkips[p], r)
		}
	}

	// Through a symlink to the directory itself, the result is the same.
	link := filepath.Join(t.TempDir(), "bp")
	symlink(t, dir, filepath.Dir(link), filepath.Base(link))
	res2, err := merkle.Build(link, merkle.BuildOptions{})
	if err != nil || res2.Root != res.Root {
		t.Errorf("build through a symlinked root: %v, %v", err, res2)
	}
}

func entryEqual(a, b merkle.Entry) bool {
	return a.Path == b.Path && a.SHA256 == b.SHA256 && a.Size == b.Size && len(a.Extra) == 0 && len(b.Extra) == 0
}

func entryLines(es []merkle.Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%q %.8s %d\n", e.Path, e.SHA256, e.Size)
	}
	return b.String()
}

func TestBuildExcludeOption(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "manifest.json", "m")
	writeFile(t, dir, "keep", "k")
	writeFile(t, dir, "drop/me", "d")
	paths := func(opts merkle.BuildOptions) []string {
		res, err := merkle.Build(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		var ps []string
		for _, e := range res.Manifest.Files {
			ps = append(ps, e.Path)
		}
		return ps
	}
	if got := paths(merkle.BuildOptions{}); !slices.Equal(got, []string{"drop/me", "keep"}) {
		t.Errorf("default: %q", got)
	}
	if got := paths(merkle.BuildOptions{Exclude: []string{}}); !slices.Equal(got, []string{"drop/me", "keep", "manifest.json"}) {
		t.Errorf("exclude nothing: %q", got)
	}
	if got := paths(merkle.BuildOptions{Exclude: []string{"drop/me", "manifest.json"}}); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("custom: %q", got)
	}
	if got := paths(merkle.BuildOptions{Exclude: []string{"drop"}}); !slices.Equal(got, []string{"drop/me", "keep", "manifest.json"}) {
		t.Errorf("a directory name excludes nothing below it: %q", got)
	}
}

func TestBuildRefuses(t *testing.T) {
	t.Run("invalid UTF-8 name", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "bad\xffname", "x")
		if _, err := merkle.Build(dir, merkle.BuildOptions{}); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := merkle.Build(filepath.Join(t.TempDir(), "nope"), merkle.BuildOptions{}); err == nil {
			t.Error("no error")
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: permissions are not enforced")
		}
		dir := t.TempDir()
		writeFile(t, dir, "locked", "x")
		if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := merkle.Build(dir, merkle.BuildOptions{}); err == nil {
			t.Error("no error")
		}
	})
}

// countingCache wraps MapCache and counts hits.
type countingCache struct {
	merkle.MapCache
	hits int
}

func (c *countingCache) Lookup(k merkle.CacheKey) (merkle.Hash, bool) {
	h, ok := c.MapCache.Lookup(k)
	if ok {
		c.hits++
	}
	return h, ok
}

func TestBuildHashCache(t *testing.T) {
	dir := copyTree(t, conformance.Path(t, "reference_backpack"))
	cache := new(countingCache)
	first, err := merkle.Build(dir, merkle.BuildOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	n := len(first.Manifest.Files)
	if first.Hashed != n || cache.Len() != n || cache.hits != 0 {
		t.Fatalf("first build: hashed %d, cached %d, hits %d; want %d, %d, 0", first.Hashed, cache.Len(), cache.hits, n, n)
	}
	second, err := merkle.Build(dir, merkle.BuildOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if second.Hashed != 0 || cache.hits != n || second.Root != first.Root {
		t.Errorf("second build: hashed %d, hits %d, root %s", second.Hashed, cache.hits, second.Root)
	}
	// Appending to the log changes its size: only it is hashed again.
	f, err := os.OpenFile(filepath.Join(dir, "events", "events.ndjson"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{}\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := merkle.Build(dir, merkle.BuildOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := merkle.Build(dir, merkle.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if third.Hashed != 1 || third.HashedBytes != 943 || third.Root != fresh.Root || third.Root == first.Root {
		t.Errorf("after append: hashed %d (%d bytes), root %s, uncached root %s", third.Hashed, third.HashedBytes, third.Root, fresh.Root)
	}
}

// logHashCache answers for the event log only, as a writer that hashes
// the log while appending would.
type logHashCache struct {
	size int64
	hash merkle.Hash
}

func (c logHashCache) Lookup(k merkle.CacheKey) (merkle.Hash, bool) {
	if k.Path == "events/events.ndjson" && k.Size == c.size {
		return c.hash, true
	}
	return merkle.Hash{}, false
}

func (logHashCache) Store(merkle.CacheKey, merkle.Hash) {}

func TestBuildTrustsCache(t *testing.T) {
	dir := copyTree(t, conformance.Path(t, "reference_backpack"))
	fake := merkle.Sum([]byte("not the log"))
	res, err := merkle.Build(dir, merkle.BuildOptions{Cache: logHashCache{size: 940, hash: fake}})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(res.Manifest.Files, func(e merkle.Entry) bool { return e.Path == "events/events.ndjson" })
	if i < 0 || res.Manifest.Files[i].SHA256 != fake.String() || res.Hashed != len(res.Manifest.Files)-1 {
		t.Errorf("the cached digest was not used: %+v, hashed %d", res.Manifest.Files[i], res.Hashed)
	}
	// With the wrong size the cache does not answer.
	res, err = merkle.Build(dir, merkle.BuildOptions{Cache: logHashCache{size: 941, hash: fake}})
	if err != nil || res.Manifest.Files[i].SHA256 == fake.String() {
		t.Errorf("cache answered for another size: %v", err)
	}
}
