package cli_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/backpack-field/backpack/internal/cli"
)

func TestTUIWithoutTerminal(t *testing.T) {
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	mustRun(t, "init", dir)
	out, code := run(t, "", "tui", dir)
	if code != cli.ExitUsage || !strings.Contains(out, "needs a terminal") || !strings.Contains(out, "backpack status") {
		t.Errorf("tui without a terminal: exit %d\n%s", code, out)
	}
	if _, code := run(t, "", "tui"); code != cli.ExitUsage {
		t.Errorf("tui without DIR: exit %d", code)
	}
}

// TestTUIOnTerminal runs `backpack tui` on a pseudo-terminal, reads the
// screen, switches view and quits with q.
func TestTUIOnTerminal(t *testing.T) {
	base := isolate(t)
	dir := filepath.Join(base, "bp")
	mustRun(t, "init", dir, "--actor", "north_camp")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitScreen := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			ok := strings.Contains(screen.String(), want)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("screen never showed %q:\n%q", want, screen.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- cli.Main(context.Background(), []string{"tui", dir}, tty, tty, &stderr) }()
	waitScreen("no agent running: showing the backpack as on disk")
	waitScreen("manifest.sig ok")
	io.WriteString(ptmx, "6")
	waitScreen("system:status")
	io.WriteString(ptmx, "q")
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("q did not quit")
	}
}
