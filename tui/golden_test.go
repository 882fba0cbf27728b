package tui

import (
	"bytes"
	"github.com/backpack-field/backpack/internal/status"
	"os"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

func TestMain(m *testing.M) {
	// Golden frames carry no colour: the text alone must say everything.
	lipgloss.SetColorProfile(termenv.Ascii)
	os.Exit(m.Run())
}

// key turns a key name into the message the terminal would send.
func key(k string) tea.KeyMsg {
	switch k {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "shift+tab":
		return tea.KeyMsg{Type: tea.KeyShiftTab}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "backspace":
		return tea.KeyMsg{Type: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
}

// step is keys to press, then a text to wait for on the screen.
type step struct {
	keys []string
	want string
}

// goldenRun runs the real program at 80x24 over src, performs the steps,
// and compares the last frame with testdata/<test name>.golden
// (regenerate with `go test ./tui -update`).
func goldenRun(t *testing.T, src *fakeSource, steps ...step) Model {
	t.Helper()
	m := NewModel(src, ModelOptions{Now: fixedNow, Dir: "/srv/backpack/survey"})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	t.Cleanup(func() { src.Close() })
	for _, s := range steps {
		for _, k := range s.keys {
			tm.Send(key(k))
		}
		want := []byte(s.want)
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, want) },
			teatest.WithDuration(15*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	}
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	fm, ok := tm.FinalModel(t, teatest.WithFinalTimeout(15*time.Second)).(Model)
	if !ok {
		t.Fatal("final model is not a Model")
	}
	teatest.RequireEqualOutput(t, []byte(fm.View()))
	return fm
}

func TestGoldenInSync(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"})
}

func TestGoldenInSyncPeers(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"2"}, want: "THEY LACK"})
}

func TestGoldenBehind(t *testing.T) {
	st := behindStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"2", "j"}, want: "it lacks 3 of our events"})
}

func TestGoldenBehindOverview(t *testing.T) {
	st := behindStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"})
}

func TestGoldenFork(t *testing.T) {
	st := forkStatus()
	src := &fakeSource{live: true, status: st, detail: forkDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"3"}, want: "FORK 1/1"})
}

func TestGoldenForkOverview(t *testing.T) {
	st := forkStatus()
	src := &fakeSource{live: true, status: st, detail: forkDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"})
}

func TestGoldenForkDetail(t *testing.T) {
	st := forkStatus()
	src := &fakeSource{live: true, status: st, detail: forkDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"3"}, want: "FORK 1/1"},
		step{keys: []string{"enter"}, want: "Fork of north_camp"})
}

func TestGoldenQuarantine(t *testing.T) {
	st := quarantineStatus()
	src := &fakeSource{live: true, status: st, detail: quarantineDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"4"}, want: "Untrusted keys (1)"})
}

func TestGoldenQuarantineConfirm(t *testing.T) {
	st := quarantineStatus()
	src := &fakeSource{live: true, status: st, detail: quarantineDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"4"}, want: "Untrusted keys (1)"},
		step{keys: []string{"t"}, want: "y trust it"})
}

func TestGoldenPolling(t *testing.T) {
	st := pollingStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"})
}

func TestGoldenOffline(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{status: st, detail: fixtureDetail(t, st), stamp: "s1"}
	goldenRun(t, src, step{want: "manifest.sig ok"})
}

func TestGoldenEvents(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"5"}, want: "(live)"},
		step{keys: []string{"/", "r", "i", "v", "e", "r", "enter"}, want: "match /river"})
}

func TestGoldenState(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"6"}, want: "NAMESPACE"},
		step{keys: []string{"/", "l", "e", "v", "e", "l", "enter"}, want: "shown for /level"})
}

func TestGoldenStateContested(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"6"}, want: "NAMESPACE"},
		step{keys: []string{"n"}, want: "namespace contested"}, step{keys: []string{"j", "enter"}, want: "Competing values"})
}

func TestGoldenRadio(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"7"}, want: "not configured"})
}

func TestGoldenRadioLink(t *testing.T) {
	st := inSyncStatus()
	st.Radio = &status.RadioStatus{Link: "up", Device: "/dev/ttyUSB0", Driver: "rnode", Region: "EU868",
		AirtimeUsed: 21.4, AirtimeBudget: 36, Window: time.Hour, FramesSent: 212, FramesRecv: 187, FramesLost: 9, EventsIn: 64,
		HasSignal: true, RSSI: -104, SNR: 3.25, Queue: 6, QueueETA: 4 * time.Minute,
		Peers: []status.RadioPeer{
			{KeyID: "bp1_7a41c0de9b2e5f10", LastHeard: fixedNow().Add(-3 * time.Minute), InSync: true},
			{KeyID: "bp1_c3d2e1f0a9b8c7d6", LastHeard: fixedNow().Add(-47 * time.Minute), ToSend: 12},
		}}
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"7"}, want: "Devices in radio range"})
}

func TestGoldenHelp(t *testing.T) {
	st := inSyncStatus()
	src := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	goldenRun(t, src, step{want: "manifest.sig ok"}, step{keys: []string{"?"}, want: "this help"})
}
