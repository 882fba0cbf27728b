package log_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	bplog "github.com/backpack-field/backpack/log"
)

// TestLockSeenByAnotherProcess holds the appender lock here and runs this
// test binary again as a second process, which must be refused.
func TestLockSeenByAnotherProcess(t *testing.T) {
	if p := os.Getenv("BACKPACK_LOCK_CHILD"); p != "" {
		_, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{})
		if err == nil {
			os.Stdout.WriteString("child: got the lock\n")
			os.Exit(0)
		}
		os.Stdout.WriteString("child: " + err.Error() + "\n")
		os.Exit(3)
	}
	p := writeLog(t, "")
	a, _, err := bplog.OpenAppender(p, bplog.AppenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child := func() (string, int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockSeenByAnotherProcess$")
		cmd.Env = append(os.Environ(), "BACKPACK_LOCK_CHILD="+p)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := child()
	if code != 3 || !strings.Contains(out, "locked by another writer") {
		t.Fatalf("child with lock held: exit %d, %q", code, out)
	}
	a.Close()
	if out, code := child(); code != 0 {
		t.Fatalf("child after release: exit %d, %q", code, out)
	}
}
