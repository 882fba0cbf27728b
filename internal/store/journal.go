package store

import (
	"errors"
	"fmt"
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
