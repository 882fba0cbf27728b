package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/backpack-field/backpack/bundles"
	bplog "github.com/backpack-field/backpack/log"
)

// Delta returns, in log order, the events a replica holding since lacks:
// for each actor, the events after the one since names as its head. When
// this log does not hold that head at that count (the receiver is ahead on
// the actor, normally its own, or the chains forked), the newest of the
// frontier's ancestors that this log holds at the same count marks where
// the chains meet, and what follows it is sent; without one, the actor's
// whole chain (duplicates cost bytes, a missing event would cost
// convergence). An empty since means everything. It never depends on file
// positions, so events merged in from peers are included (the reference's
// --since misses them).
func (b *Backpack) Delta(ctx context.Context, since bplog.Frontier) ([][]byte, error) {
	lines, _, err := b.Deltas(ctx, []bplog.Frontier{since})
	return lines, err
}

// Deltas is Delta for several receivers at once: it returns, in log
// order, every event some frontier lacks, and for each frontier the
// indexes into lines of the events it lacks. Which events is decided from
// the log index in memory; only their lines are read, from the end of the
// log, so the time grows with what is sent, not with the log.
func (b *Backpack) Deltas(ctx context.Context, fronts []bplog.Frontier) ([][]byte, [][]int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	x, err := b.indexLocked(ctx)
	if err != nil {
		return nil, nil, err
	}
	chains := x.actorChains()
	// need[i]: a bit per frontier that lacks item i.
	need := make(map[int]uint64)
	if len(fronts) > 64 {
		return nil, nil, fmt.Errorf("store: %d frontiers at once (at most 64)", len(fronts))
	}
	first := len(x.items)
	for fi, f := range fronts {
		for a, chain := range chains {
			cut := 0
			if h, ok := f[a]; ok {
				cut = chainCut(x, chain, h)
			}
			for _, i := range chain[cut:] {
				need[i] |= 1 << fi
				first = min(first, i)
			}
		}
	}
	if len(need) == 0 {
		return nil, make([][]int, len(fronts)), nil
	}
	got, err := b.readItemsLocked(x, first, need)
	if err != nil {
		return nil, nil, err
	}
	lines := make([][]byte, 0, len(need))
	which := make([][]int, len(fronts))
	for i := first; i < len(x.items); i++ {
		bits, ok := need[i]
		if !ok {
			continue
		}
		for fi := range fronts {
			if bits&(1<<fi) != 0 {
				which[fi] = append(which[fi], len(lines))
			}
		}
		lines = append(lines, got[i-first])
	}
	return lines, which, nil
}

// chainCut returns how many events of an actor's chain (positions in x) a
// receiver whose head is h holds: h's count when this chain holds h's
// head there, else the count of the newest ancestor of h this chain holds
// at its count, else 0.
func chainCut(x *logIndex, chain []int, h bplog.ActorHead) int {
	at := func(count int64, id string) bool {
		return count >= 1 && count <= int64(len(chain)) && x.items[chain[count-1]].ID == id
	}
	if at(h.Count, h.Head) {
		return int(h.Count)
	}
	best := int64(0)
	for _, an := range h.Ancestors {
		if an.Count > best && at(an.Count, an.ID) {
			best = an.Count
		}
	}
	return int(best)
}

// readItemsLocked returns the canonical lines of the index's items from
// first to its end (nil where need has no entry). It reads the log
// backwards from its end, recognising each item's line by its hash, so
// it reads about as much as it returns. Lines the index leaves out (bad
// lines, repeated ids) are passed over; a line that is not in canonical
// form is parsed and its canonical form used.
func (b *Backpack) readItemsLocked(x *logIndex, first int, need map[int]uint64) ([][]byte, error) {
	f, err := bplog.OpenShared(context.Background(), b.path(EventsPath), readersWait)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	out := make([][]byte, len(x.items)-first)
	// Guess how far back the items start from the average line length;
	// read twice as far each time the guess falls short.
	avg := size / int64(max(len(x.items), 1))
	span := min(size, avg*int64(len(x.items)-first)*5/4+64<<10)
	for {
		data := make([]byte, span)
		if _, err := f.ReadAt(data, size-span); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if j := matchBackwards(x, data, span == size, first, need, out); j < first {
			return out, nil
		}
		if span == size {
			break
		}
		span = min(size, span*2)
	}
	return nil, fmt.Errorf("store: events.ndjson does not hold the events its index names; run `backpack verify`")
}

// matchBackwards walks data's lines from the last, matching them to the
// index's items from the last, and fills out for the needed items from
// first on. whole says data starts at the file's start (else its first,
// partial line is not used). It returns the position of the last item
// not found (below first when all were).
func matchBackwards(x *logIndex, data []byte, whole bool, first int, need map[int]uint64, out [][]byte) int {
	j := len(x.items) - 1
	end := len(data)
	for j >= first && end > 0 {
		start := bytes.LastIndexByte(data[:end-1], '\n') + 1
		if start == 0 && !whole {
			break
		}
		line := bytes.TrimRight(data[start:end], "\r\n")
		end = start
		if len(line) == 0 {
			continue
		}
		canonical := line
		if sha256.Sum256(line) != x.hashes[j] {
			e, err := bplog.Parse(line)
			if err != nil {
				continue
			}
			full, _, _, err := e.Encodings()
			if err != nil || sha256.Sum256(full) != x.hashes[j] {
				continue
			}
			canonical = full
		}
		if _, ok := need[j]; ok {
			out[j-first] = bytes.Clone(canonical)
		}
		j--
	}
	return j
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
