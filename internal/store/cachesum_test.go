package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
)

type cacheSumEntry struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MtimeNS int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256"`
}

// TestCacheSum: a writer that writes the state cache notes its files'
// digests in the device directory; a later open takes a note only while
// its file has the size and time it names, so a changed cache file still
// reaches the manifest.
func TestCacheSum(t *testing.T) {
	dir, res := newBackpack(t)
	bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: res.KeyFile, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1200 {
		if _, err := bp.Append(observation("s", "p", canon.IntValue(int64(i)), 0.5)); err != nil {
			t.Fatal(err)
		}
	}
	uid := bp.UID()
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	dev, err := store.DeviceDir(uid, dir)
	if err != nil {
		t.Fatal(err)
	}
	notePath := filepath.Join(dev, "cache.sum")
	readNote := func() map[string]cacheSumEntry {
		t.Helper()
		data, err := os.ReadFile(notePath)
		if err != nil {
			t.Fatal(err)
		}
		var n struct {
			Files []cacheSumEntry `json:"files"`
		}
		if err := json.Unmarshal(data, &n); err != nil {
			t.Fatal(err)
		}
		m := map[string]cacheSumEntry{}
		for _, e := range n.Files {
			m[e.Path] = e
		}
		return m
	}
	// Every cache file there is, and only those, is noted as it is.
	checkNote := func(when string) {
		t.Helper()
		note := readNote()
		for _, rel := range []string{store.CachePath, store.CacheIndexPath, store.CacheBasePath} {
			data, err := os.ReadFile(filepath.Join(dir, rel))
			if errors.Is(err, os.ErrNotExist) {
				if _, ok := note[rel]; ok {
					t.Errorf("%s: cache.sum notes %s, which does not exist", when, rel)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(filepath.Join(dir, rel))
			sum := sha256.Sum256(data)
			if n, ok := note[rel]; !ok || n.Size != fi.Size() || n.MtimeNS != fi.ModTime().UnixNano() || n.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("%s: cache.sum %+v does not describe %s (size %d, sha256 %x)", when, n, rel, fi.Size(), sum)
			}
		}
	}
	if _, ok := readNote()[store.CacheIndexPath]; !ok {
		t.Fatal("cache.sum notes no index file")
	}
	checkNote("after the writer's close")
	mustVerify(t, dir)

	// A note whose time no longer matches is passed over: a cache file
	// changed behind the store's back (here: same size, other bytes)
	// is hashed again and the manifest rebuilt.
	for _, rel := range []string{store.CachePath, store.CacheIndexPath} {
		path := filepath.Join(dir, rel)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		data[len(data)-1] ^= 0xff
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		later := fi.ModTime().Add(time.Second)
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
		bp, err = store.Open(context.Background(), dir, store.Options{KeyFile: res.KeyFile, Now: clock()})
		if err != nil {
			t.Fatal(err)
		}
		bp.Close()
		mustVerify(t, dir) // the manifest covers the file as it is now
		checkNote("after " + rel + " changed")
	}
}

// TestDeferState: a backpack opened with DeferState, with log lines past
// its state cache, has the state a full replay gives, whether the state
// is first needed by a read, an append or a merge.
func TestDeferState(t *testing.T) {
	dir, res := newBackpack(t)
	appendN(t, dir, res.KeyFile, "north", 1200, clock()) // writes the cache at close
	later := func() func() time.Time {
		c := clock()
		for range 5000 {
			c()
		}
		return c
	}
	appendN(t, dir, res.KeyFile, "north", 10, later()) // past the cache
	open := func() *store.Backpack {
		t.Helper()
		bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: res.KeyFile, Now: later(), DeferState: true})
		if err != nil {
			t.Fatal(err)
		}
		return bp
	}
	bp := open()
	if bp.Snapshot() != nil {
		t.Error("a deferred state was published before it was decoded")
	}
	got, err := bp.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	before := bp.Snapshot()
	if before == nil {
		t.Fatal("no snapshot once the deferred state was decoded")
	}
	bp.Close()
	if want := replayHash(t, dir); got != want {
		t.Fatalf("deferred state %s, replay %s", got, want)
	}

	bp = open()
	if _, err := bp.Append(observation("north", "reading", canon.IntValue(-1), 0.5)); err != nil {
		t.Fatal(err)
	}
	if s := bp.Snapshot(); s == nil || s.EventCount != before.EventCount+1 {
		t.Fatalf("snapshot after an append on a deferred state: %+v", s)
	}
	got, _ = bp.StateHash()
	bp.Close()
	if want := replayHash(t, dir); got != want {
		t.Fatalf("after an append: deferred state %s, replay %s", got, want)
	}
	mustVerify(t, dir)
}
