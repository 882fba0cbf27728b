package watcher_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/watcher"
)

// BenchmarkDrop1000 drops 1,000 files into a watched directory at once
// and measures until all 1,000 notices are received: notices/s over the
// whole round (file creation included, which dominates on a busy disk),
// and the time from the last write to the last notice (the settle period
// plus the watcher's own work).
func BenchmarkDrop1000(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts watcher.Options
	}{
		{"inotify/settle=200ms", watcher.Options{}},
		{"inotify/settle=20ms", watcher.Options{Settle: 20 * time.Millisecond}},
		{"poll=100ms/settle=20ms", watcher.Options{ForcePoll: true, Poll: 100 * time.Millisecond, Settle: 20 * time.Millisecond}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			bc.opts.Rescan = -1
			w, err := watcher.New(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Add(dir, 0); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()
			for w.Status()[0].Mode == watcher.ModeStarting {
				time.Sleep(time.Millisecond)
			}
			data := make([]byte, 1024)
			b.ReportAllocs()
			rounds := 0
			var tail time.Duration // from the last write to the last notice
			for b.Loop() {
				for j := range 1000 {
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d-%04d.bpk", rounds, j)), data, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				written := time.Now()
				for range 1000 {
					select {
					case <-w.Changes():
					case <-time.After(wait):
						b.Fatal("notices missing")
					}
				}
				tail += time.Since(written)
				rounds++
			}
			b.ReportMetric(float64(1000*rounds)/b.Elapsed().Seconds(), "notices/s")
			b.ReportMetric(float64(tail.Milliseconds())/float64(rounds), "ms-after-last-write")
		})
	}
}
