package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
)

// The append journal makes a multi-line append all-or-nothing across a
// crash: before the write, <device dir>/append.journal records the log
// size and the batch length; after the fsync it is removed. A writer that
// opens the backpack and finds a journal whose batch is only partly in the
// log cuts that part off (keeping its bytes in the quarantine); a batch
// that is wholly there stays.

func (b *Backpack) journalPath() (string, error) {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dev, "append.journal"), nil
}

func (b *Backpack) writeJournal(offset, length int64) error {
	p, err := b.journalPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	var o canon.ObjectBuilder
	o.Set("offset", canon.IntValue(offset)).Set("length", canon.IntValue(length))
	return writeFileAtomic(p, canon.MustEncode(o.Value()), 0o600)
}

func (b *Backpack) clearJournal() {
	if p, err := b.journalPath(); err == nil {
		os.Remove(p)
	}
}

// settleJournal undoes a batch an interrupted writer left in part.
func (b *Backpack) settleJournal() error {
	p, err := b.journalPath()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := canon.Limits{MaxSize: 4096}.Parse(data)
	off, ok1 := v.Field("offset").Int64()
	n, ok2 := v.Field("length").Int64()
	if err != nil || !ok1 || !ok2 {
		b.log.Warn("append journal unreadable; ignored", "path", p)
		return os.Remove(p)
	}
	size := b.app.Size()
	if size > off && size < off+n {
		cut, err := b.app.CutTo(off)
		if err != nil {
			return fmt.Errorf("undo a partly written batch: %w", err)
		}
		q := filepath.Join(filepath.Dir(p), "quarantine")
		if err := os.MkdirAll(q, 0o700); err != nil {
			return err
		}
		name := fmt.Sprintf("partial-batch-%d-%s.bin", off, time.Now().UTC().Format("20060102T150405Z"))
		if err := writeFileAtomic(filepath.Join(q, name), cut, 0o600); err != nil {
			return err
		}
		b.log.Warn("events.ndjson: removed a batch an interrupted write left in part; its bytes are kept in the quarantine",
			"offset", off, "bytes", len(cut))
	}
	return os.Remove(p)
}

// The rewrite journal makes a merge that rewrites only the log's tail
// all-or-nothing across a crash. Before the log is cut at the first line
// that changes, <device dir>/rewrite.journal records that offset, the
// log's old and new sizes, the SHA-256 of the old and the new tail, and
// the old tail's bytes (a header line, then the bytes). After the new
// tail is written and synced it is removed. A writer that opens the
// backpack and finds it either sees the new tail whole (the rewrite
// finished) or puts the old tail back: the log is as before the merge or
// as after it, never between.
const rewriteJournalName = "rewrite.journal"

func (b *Backpack) rewriteJournalPath() (string, error) {
	dev, err := DeviceDir(b.uid, b.dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dev, rewriteJournalName), nil
}

// replaceTailLocked makes the log new, which shares its first off bytes
// with old (the log as it is), by rewriting only what follows them, under
// the rewrite journal.
func (b *Backpack) replaceTailLocked(old, new []byte, off int64) error {
	p, err := b.rewriteJournalPath()
	if err != nil {
		return err
	}
	if err := writeRewriteJournal(p, old, new, off); err != nil {
		return err
	}
	if err := b.app.ReplaceTail(off, new[off:]); err != nil {
		// Put the old tail back now if we can; the journal stays for the
		// next writer if we cannot.
		if rerr := b.settleRewriteJournal(); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return os.Remove(p)
}

func writeRewriteJournal(p string, old, new []byte, off int64) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	oldSum, newSum := sha256.Sum256(old[off:]), sha256.Sum256(new[off:])
	var h canon.ObjectBuilder
	h.Set("offset", canon.IntValue(off)).
		Set("old_size", canon.IntValue(int64(len(old)))).
		Set("new_size", canon.IntValue(int64(len(new)))).
		Set("old_tail_sha256", canon.StringValue(hex.EncodeToString(oldSum[:]))).
		Set("new_tail_sha256", canon.StringValue(hex.EncodeToString(newSum[:])))
	j := append(canon.MustEncode(h.Value()), '\n')
	j = append(j, old[off:]...)
	if err := writeFileAtomic(p, j, 0o600); err != nil {
		return fmt.Errorf("rewrite journal: %w", err)
	}
	return nil
}

// settleRewriteJournal finishes or undoes a tail rewrite an interrupted
// writer left (see replaceTailLocked).
func (b *Backpack) settleRewriteJournal() error {
	p, err := b.rewriteJournalPath()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	nl := bytes.IndexByte(data, '\n')
	var v canon.Value
	if nl >= 0 {
		v, err = canon.Limits{MaxSize: 4096}.Parse(data[:nl])
	}
	off, ok1 := v.Field("offset").Int64()
	oldSize, ok2 := v.Field("old_size").Int64()
	newSize, ok3 := v.Field("new_size").Int64()
	oldTail := data[nl+1:]
	oldSum := sha256.Sum256(oldTail)
	if nl < 0 || err != nil || !ok1 || !ok2 || !ok3 || off < 0 || off+int64(len(oldTail)) != oldSize ||
		hex.EncodeToString(oldSum[:]) != v.Field("old_tail_sha256").Str() {
		// Without a sound copy of the old tail the log is left as it is
		// (verify reports what is wrong with it); the journal is kept
		// aside for a person to look at.
		b.log.Warn("rewrite journal damaged; the log is left as it is", "path", p)
		return os.Rename(p, p+".damaged")
	}
	size := b.app.Size()
	tailSum := func(want string) bool {
		if size < off {
			return false
		}
		f, err := os.Open(b.path(EventsPath))
		if err != nil {
			return false
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, off, size-off)); err != nil {
			return false
		}
		return hex.EncodeToString(h.Sum(nil)) == want
	}
	switch {
	case size == newSize && tailSum(v.Field("new_tail_sha256").Str()):
		// The rewrite finished; only the journal's removal was lost.
	case size == oldSize && tailSum(v.Field("old_tail_sha256").Str()):
		// It never started.
	default:
		if size < off {
			return fmt.Errorf("store: events.ndjson is shorter (%d bytes) than the rewrite journal's offset %d; left as it is", size, off)
		}
		if err := b.app.ReplaceTail(off, oldTail); err != nil {
			return fmt.Errorf("undo an interrupted rewrite: %w", err)
		}
		b.log.Warn("events.ndjson: undid a merge an interrupted writer left in part", "offset", off)
	}
	return os.Remove(p)
}
