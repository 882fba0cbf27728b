package cli_test

import (
	"strings"
	"testing"
)

func TestSimCommand(t *testing.T) {
	isolate(t)
	out := mustRun(t, "sim", "--devices", "3", "--offline", "5", "--loss", "0.1", "--after", "30m",
		"--partition", "0s-2h:0,1|2", "--seed", "3")
	for _, want := range []string{"events written: 15", "converged after", "same state hash on every device: yes", "in sync for 30m0s",
		"collisions modelled; radios listen before talking", "frames lost to collisions (whole run): "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, code := run(t, "", "sim", "--topology", "ring"); code != 2 {
		t.Errorf("bad topology: exit %d, want 2", code)
	}
	if _, code := run(t, "", "sim", "--partition", "5h-1h:0"); code != 2 {
		t.Errorf("bad partition: exit %d, want 2", code)
	}
}
