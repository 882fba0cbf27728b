package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

// TestRewriteJournalRecovery: whatever point a tail rewrite was cut off
// at, the next writer finds the log as before the rewrite or as after it.
func TestRewriteJournalRecovery(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	dir := filepath.Join(t.TempDir(), "bp")
	res, err := Init(context.Background(), dir, InitOptions{Actor: "field", UID: "journal-uid"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), dir, Options{KeyFile: res.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		var p, body canon.ObjectBuilder
		p.Set("subject", canon.StringValue("s")).Set("predicate", canon.StringValue("p")).Set("value", canon.IntValue(int64(i)))
		body.Set("type", canon.StringValue("OBSERVATION")).Set("payload", p.Value())
		if _, err := b.Append(body.Value()); err != nil {
			t.Fatal(err)
		}
	}
	jp, err := b.rewriteJournalPath()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, EventsPath)
	old, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The "new" log: the last five lines in reverse order (any bytes do
	// for the journal; the log's content is checked byte for byte).
	lines := bytes.SplitAfter(old, []byte("\n"))
	lines = lines[:len(lines)-1]
	off := int64(len(bytes.Join(lines[:len(lines)-5], nil)))
	var nw []byte
	nw = append(nw, old[:off]...)
	for i := len(lines) - 1; i >= len(lines)-5; i-- {
		nw = append(nw, lines[i]...)
	}

	cases := []struct {
		name string
		log  []byte // the log as the crash left it
		want []byte
	}{
		{"journal written, log untouched", old, old},
		{"log cut", old[:off], old},
		{"half the new tail written", nw[:off+int64(len(nw)-int(off))/2], old},
		{"new tail written whole", nw, nw},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := writeRewriteJournal(jp, old, nw, off); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(logPath, c.log, 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := Open(context.Background(), dir, Options{KeyFile: res.KeyFile})
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
			got, _ := os.ReadFile(logPath)
			if !bytes.Equal(got, c.want) {
				t.Fatalf("log after recovery is not the expected one (%d bytes, want %d)", len(got), len(c.want))
			}
			if _, err := os.Stat(jp); !os.IsNotExist(err) {
				t.Fatalf("journal still there: %v", err)
			}
		})
	}
	t.Run("damaged journal", func(t *testing.T) {
		if err := writeRewriteJournal(jp, old, nw, off); err != nil {
			t.Fatal(err)
		}
		j, _ := os.ReadFile(jp)
		j[len(j)-3] ^= 1
		os.WriteFile(jp, j, 0o600)
		os.WriteFile(logPath, old[:off], 0o644)
		b, err := Open(context.Background(), dir, Options{KeyFile: res.KeyFile})
		if err == nil {
			b.Close()
		}
		if _, err := os.Stat(jp + ".damaged"); err != nil {
			t.Fatalf("damaged journal not kept aside: %v", err)
		}
		os.WriteFile(logPath, old, 0o644)
	})
}
