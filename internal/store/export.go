package store

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/scan"
	bplog "github.com/backpack-field/backpack/log"
)

// Delta returns, in log order, the events a replica holding since lacks:
// for each actor, the events after the one since names as its head. When
// this log does not hold that head at that count (the receiver is ahead on
// the actor, normally its own, or the chains forked), the newest of the
// frontier's ancestors that this log holds at the same count marks where
// the chains meet, and what follows it is sent; without one, the actor's
// whole chain (duplicates cost bytes, a missing event would cost
// convergence). A nil since means everything. It never depends on file positions, so events merged in
// from peers are included (the reference's --since misses them).
func (b *Backpack) Delta(ctx context.Context, since bplog.Frontier) ([][]byte, error) {
	f, err := os.Open(b.path(EventsPath))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type ev struct {
		actor string
		line  []byte
	}
	var all []ev
	pos := map[string]int{}   // actor -> events of the actor seen so far
	cut := map[string]int{}   // actor -> how many of its events the receiver holds
	seen := map[string]bool{} // dedup by id
	err = scan.Run(ctx, f, scan.Options{Hashes: true}, func(it *scan.Item) error {
		e := it.Event
		if e == nil || it.EventErr != nil || it.EncodeErr != nil || seen[e.ID] {
			return nil
		}
		seen[e.ID] = true
		full, _, _, err := e.Encodings()
		if err != nil {
			return nil
		}
		pos[e.Actor]++
		if h, ok := since[e.Actor]; ok && matchesAt(h, e.ID, int64(pos[e.Actor])) {
			cut[e.Actor] = pos[e.Actor]
		}
		all = append(all, ev{e.Actor, full})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	n := map[string]int{}
	for _, e := range all {
		n[e.actor]++
		if n[e.actor] > cut[e.actor] {
			out = append(out, e.line)
		}
	}
	return out, nil
}

// StaticFiles returns the files a full export carries so that a new device
// can be made from it (bundles.File): identity/genesis.json,
// identity/keys.json and the regular files under policies/, byte for byte.
// Private keys never go (bundles.CheckFilePath refuses their names); temp
// and hidden files are left out, and so, with a warning, are policy files
// whose names a bundle cannot carry. More files, or larger ones, than lim
// allows (zero fields: the defaults) are an error.
func (b *Backpack) StaticFiles(lim bundles.Limits) ([]bundles.File, error) {
	if lim.MaxFiles <= 0 {
		lim.MaxFiles = bundles.DefaultMaxFiles
	}
	if lim.MaxFileSize <= 0 {
		lim.MaxFileSize = bundles.DefaultMaxFileSize
	}
	paths := []string{GenesisPath, KeysPath}
	root := b.path("policies")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(b.dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir() || strings.HasPrefix(d.Name(), ".") || strings.Contains(d.Name(), ".tmp-"):
			return nil
		case !d.Type().IsRegular():
			return nil
		}
		if err := bundles.CheckFilePath(rel); err != nil {
			if !strings.Contains(strings.ToLower(rel), "private") {
				b.log.Warn("policy file left out of the bundle", "file", rel, "reason", err)
			}
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if len(paths) > lim.MaxFiles {
		return nil, fmt.Errorf("store: the backpack has %d static files (genesis, keys and policies); a bundle carries at most %d", len(paths), lim.MaxFiles)
	}
	out := make([]bundles.File, 0, len(paths))
	for _, rel := range paths {
		p := b.path(rel)
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.Size() > int64(lim.MaxFileSize) {
			return nil, fmt.Errorf("store: %s is %d bytes; a bundle carries files of at most %d bytes", rel, st.Size(), lim.MaxFileSize)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if len(data) > lim.MaxFileSize {
			return nil, fmt.Errorf("store: %s grew to %d bytes while reading; a bundle carries files of at most %d bytes", rel, len(data), lim.MaxFileSize)
		}
		out = append(out, bundles.File{Path: rel, Data: data})
	}
	return out, nil
}

// matchesAt reports whether the receiver's head h names id at chain
// position count, as its head or as one of its ancestors.
func matchesAt(h bplog.ActorHead, id string, count int64) bool {
	if h.Head == id && h.Count == count {
		return true
	}
	for _, a := range h.Ancestors {
		if a.Count == count && a.ID == id {
			return true
		}
	}
	return false
}
