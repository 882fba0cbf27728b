package tui

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/backpack-field/backpack/internal/status"
)

// runCmd runs cmd and the commands of any batch it returns, and collects
// their messages. Commands still blocked after a moment (waiting on a
// subscription or a timer) are left to themselves; the fixtures' other
// commands return at once.
func runCmd(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	select {
	case msg := <-ch:
		if batch, ok := msg.(tea.BatchMsg); ok {
			var out []tea.Msg
			for _, c := range batch {
				out = append(out, runCmd(c)...)
			}
			return out
		}
		if msg == nil {
			return nil
		}
		return []tea.Msg{msg}
	case <-time.After(300 * time.Millisecond):
		return nil
	}
}

// send applies msg and then every message its commands produce, until
// nothing is left (blocked commands aside).
func send(t *testing.T, m Model, msgs ...tea.Msg) Model {
	t.Helper()
	for len(msgs) > 0 {
		msg := msgs[0]
		msgs = msgs[1:]
		nm, cmd := m.Update(msg)
		m = nm.(Model)
		for _, out := range runCmd(cmd) {
			switch out.(type) {
			case tickMsg, unchangedMsg, clockMsg:
				continue // the timer; tests send ticks themselves
			}
			msgs = append(msgs, out)
		}
	}
	return m
}

func press(t *testing.T, m Model, keys ...string) Model {
	t.Helper()
	for _, k := range keys {
		m = send(t, m, key(k))
	}
	return m
}

// liveModel is a model attached to a fixture agent, its detail loaded.
func liveModel(t *testing.T, st *status.Status, d *Detail) (Model, *fakeSource) {
	t.Helper()
	src := &fakeSource{live: true, status: st, detail: d}
	t.Cleanup(func() { src.Close() })
	m := NewModel(src, ModelOptions{Now: fixedNow, Dir: "/srv/backpack/survey"})
	m = send(t, m, tea.WindowSizeMsg{Width: 80, Height: 24})
	m = send(t, m, subscribedMsg{mustSubscribe(t, src)})
	if m.status == nil || m.detail == nil || !m.live {
		t.Fatalf("live model: status %v detail %v live %v", m.status != nil, m.detail != nil, m.live)
	}
	return m, src
}

func mustSubscribe(t *testing.T, src Source) <-chan *status.Status {
	t.Helper()
	ch, err := src.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestUpdateInitSubscribesOrGoesOffline(t *testing.T) {
	st := inSyncStatus()
	live := &fakeSource{live: true, status: st, detail: fixtureDetail(t, st)}
	defer live.Close()
	m := NewModel(live, ModelOptions{Now: fixedNow})
	msgs := runCmd(m.Init()) // the clock's tick is still waiting
	if len(msgs) != 1 || reflect.TypeOf(msgs[0]) != reflect.TypeOf(subscribedMsg{}) {
		t.Fatalf("Init with an agent: %#v", msgs)
	}

	off := &fakeSource{status: st, detail: fixtureDetail(t, st), stamp: "a"}
	m = NewModel(off, ModelOptions{Now: fixedNow})
	m = send(t, m, runCmd(m.Init())...)
	if m.live || m.status == nil || m.status.Agent.Running || m.detail == nil || m.stamp != "a" {
		t.Fatalf("offline: live %v status %+v detail %v stamp %q", m.live, m.status, m.detail != nil, m.stamp)
	}
	if v := m.View(); !strings.Contains(v, "no agent running: showing the backpack as on disk") {
		t.Errorf("offline screen does not say so:\n%s", v)
	}
}

func TestUpdateDetailLoadsOnlyWhenTheBackpackChanges(t *testing.T) {
	st := inSyncStatus()
	m, src := liveModel(t, st, fixtureDetail(t, st))
	if src.details != 1 {
		t.Fatalf("%d detail loads after the first status", src.details)
	}
	// The same backpack with a new pass count: no reload.
	again := *st
	again.Agent.Passes++
	m = send(t, m, statusMsg{&again})
	if src.details != 1 {
		t.Errorf("reloaded although the backpack did not change (%d loads)", src.details)
	}
	// New events: one reload.
	more := again
	more.Backpack.Events += 5
	more.Backpack.StateHash = "different"
	m = send(t, m, statusMsg{&more})
	if src.details != 2 {
		t.Errorf("%d loads after new events, want 2", src.details)
	}
	// A change while a load is in flight waits for it, then loads once.
	m.loading = true
	held := more
	held.Held.Quarantine = 3
	nm, cmd := m.Update(statusMsg{&held})
	m = nm.(Model)
	for _, out := range runCmd(cmd) {
		if _, ok := out.(detailMsg); ok {
			t.Fatal("a second load started while one was in flight")
		}
	}
	m = send(t, m, detailMsg{d: fixtureDetail(t, &held)})
	if src.details != 3 || m.loading {
		t.Errorf("after the in-flight load ended: %d loads, loading %v", src.details, m.loading)
	}
}

func TestUpdateNoDiskPollingWhileLive(t *testing.T) {
	st := inSyncStatus()
	m, _ := liveModel(t, st, fixtureDetail(t, st))
	if _, cmd := m.Update(tickMsg{}); cmd != nil {
		t.Error("a tick while subscribed started a command")
	}
	// Offline, a tick probes: unchanged files give no reload.
	off := &fakeSource{status: st, detail: fixtureDetail(t, st), stamp: "a"}
	mo := NewModel(off, ModelOptions{Now: fixedNow})
	mo = send(t, mo, runCmd(mo.Init())...)
	n := off.details
	_, cmd := mo.Update(tickMsg{})
	msgs := runCmd(cmd)
	if len(msgs) != 1 || reflect.TypeOf(msgs[0]) != reflect.TypeOf(unchangedMsg{}) || off.details != n {
		t.Errorf("offline tick with unchanged files: %#v, %d loads", msgs, off.details)
	}
	// Changed files: the status and the detail are read again.
	off.mu.Lock()
	off.stamp = "b"
	off.status.Backpack.Events++
	off.mu.Unlock()
	mo = send(t, mo, tickMsg{})
	if off.details != n+1 || mo.stamp != "b" || mo.status.Backpack.Events != st.Backpack.Events {
		t.Errorf("offline tick with changed files: %d loads, stamp %q", off.details, mo.stamp)
	}
	// An agent appears: the model subscribes.
	off.mu.Lock()
	off.live = true
	off.mu.Unlock()
	mo = send(t, mo, tickMsg{})
	if !mo.live {
		t.Error("did not attach to the agent that appeared")
	}
	off.Close()
}

func TestUpdateAgentGone(t *testing.T) {
	st := inSyncStatus()
	m, src := liveModel(t, st, fixtureDetail(t, st))
	src.mu.Lock()
	src.live = false
	src.mu.Unlock()
	m = send(t, m, agentGoneMsg{})
	if m.live || m.sub != nil {
		t.Fatal("still live after the agent went away")
	}
	if !strings.Contains(m.msg, "agent stopped") || !strings.Contains(m.View(), "no agent running") {
		t.Errorf("message %q; screen:\n%s", m.msg, m.View())
	}
}

func TestUpdateSwitchViews(t *testing.T) {
	st := inSyncStatus()
	m, _ := liveModel(t, st, fixtureDetail(t, st))
	for i, want := range []view{viewOverview, viewPeers, viewForks, viewHeld, viewEvents, viewState, viewRadio} {
		m = press(t, m, fmt.Sprint(i+1))
		if m.view != want {
			t.Errorf("key %d: view %d", i+1, m.view)
		}
		if !strings.Contains(m.View(), "["+fmt.Sprint(i+1)+" "+viewNames[want]) {
			t.Errorf("key %d: tab not marked", i+1)
		}
	}
	m = press(t, m, "tab")
	if m.view != viewOverview {
		t.Errorf("tab after the last view: %d", m.view)
	}
	m = press(t, m, "shift+tab")
	if m.view != viewRadio {
		t.Errorf("shift+tab: %d", m.view)
	}
	m = press(t, m, "?")
	if !m.showHelp || !strings.Contains(m.View(), "this help") {
		t.Error("? does not show the help")
	}
	m = press(t, m, "esc")
	if m.showHelp {
		t.Error("esc does not close the help")
	}
	nm, cmd := m.Update(key("q"))
	if !nm.(Model).quitting || cmd == nil {
		t.Error("q does not quit")
	}
}

func TestUpdatePeers(t *testing.T) {
	st := behindStatus()
	m, _ := liveModel(t, st, fixtureDetail(t, st))
	m = press(t, m, "2", "j")
	if m.cursor[viewPeers] != 1 || !strings.Contains(m.View(), "we lack 240") {
		t.Fatalf("cursor %d:\n%s", m.cursor[viewPeers], m.View())
	}
	m = press(t, m, "j", "j", "j")
	if m.cursor[viewPeers] != 2 {
		t.Errorf("cursor went past the last peer: %d", m.cursor[viewPeers])
	}
	if !strings.Contains(m.View(), "error     read frontier.json") {
		t.Errorf("the selected peer's error is not shown:\n%s", m.View())
	}
	m = press(t, m, "enter")
	if m.pane == nil || !strings.Contains(m.View(), "last error    read frontier.json") {
		t.Fatal("enter does not open the peer")
	}
	m = press(t, m, "esc")
	if m.pane != nil {
		t.Error("esc does not close the pane")
	}
	m = press(t, m, "/", "r", "i", "v", "enter")
	if got := m.peerIdx(); len(got) != 1 || st.Peers[got[0]].Actor != "river_team" {
		t.Errorf("filter /riv: %v", got)
	}
}

func TestUpdateForks(t *testing.T) {
	st := forkStatus()
	d := forkDetail(t, st)
	m, _ := liveModel(t, st, d)
	v := m.View()
	if !strings.Contains(v, "!! FORK: 1 fork: history of north_camp split") {
		t.Fatalf("no fork banner on the overview:\n%s", v)
	}
	m = press(t, m, "3")
	v = m.View()
	for _, want := range []string{d.Forks[0].Sides[0].EventID, d.Forks[0].Sides[1].EventID, "level = 38", "level = 12"} {
		if !strings.Contains(v, want) {
			t.Errorf("forks view lacks %q:\n%s", want, v)
		}
	}
	m = press(t, m, "enter")
	if m.pane == nil {
		t.Fatal("enter does not open the fork")
	}
	// The pane holds both full signed events, signatures included.
	for _, s := range d.Forks[0].Sides {
		sig := s.Line[strings.Index(s.Line, `"sig":"`)+7:]
		sig = sig[:strings.IndexByte(sig, '"')]
		if !strings.Contains(m.pane.text, sig) {
			t.Errorf("pane lacks the signature of %s", s.EventID)
		}
	}
	m = press(t, m, "down", "down")
	if m.pane.vp.YOffset != 2 {
		t.Errorf("pane scrolled to %d", m.pane.vp.YOffset)
	}
	// The banner stays on every view.
	m = press(t, m, "esc", "6")
	if !strings.Contains(m.View(), "!! FORK") {
		t.Error("no banner on the state view")
	}
}

func TestUpdateHeldAndTrust(t *testing.T) {
	st := quarantineStatus()
	d := quarantineDetail(t, st)
	m, src := liveModel(t, st, d)
	m = press(t, m, "4")
	v := m.View()
	for _, want := range []string{"Untrusted keys (1)", "Pending (2)", "need events after " + fakeID("river 1801") + " from actor river_team", "Quarantine (5)", "[t trust]"} {
		if !strings.Contains(v, want) {
			t.Errorf("held view lacks %q:\n%s", want, v)
		}
	}
	// n cancels, and nothing is trusted.
	m = press(t, m, "t")
	if m.confirm == nil || m.confirm.KeyID != d.Keys[0].KeyID {
		t.Fatal("t does not ask to trust the key")
	}
	m = press(t, m, "n")
	if m.confirm != nil || len(src.trusted) != 0 {
		t.Fatal("n did not cancel")
	}
	// y trusts, and the quarantine is read again.
	loads := src.details
	m = press(t, m, "t", "y")
	if len(src.trusted) != 1 || src.trusted[0] != d.Keys[0].KeyID {
		t.Fatalf("trusted %v", src.trusted)
	}
	if !strings.Contains(m.msg, "trusted "+d.Keys[0].KeyID) || src.details != loads+1 {
		t.Errorf("after trust: message %q, %d loads", m.msg, src.details)
	}
	// A failure is shown, not hidden.
	src.trustFn = func(string) (*TrustResult, error) { return nil, errors.New("backpack is locked") }
	m = press(t, m, "t", "y")
	if !m.msgErr || !strings.Contains(m.msg, "backpack is locked") {
		t.Errorf("failed trust: %q", m.msg)
	}
	// t on a quarantined event (not a key) explains.
	m = press(t, m, "j", "t")
	if m.confirm != nil || !strings.Contains(m.msg, "select an untrusted key") {
		t.Errorf("t on an event: confirm %v msg %q", m.confirm, m.msg)
	}
	m = press(t, m, "enter")
	if m.pane == nil || !strings.Contains(m.pane.text, `"actor": "river_team"`) {
		t.Error("enter does not show the pending event")
	}
}

func TestUpdateEventsFilter(t *testing.T) {
	st := inSyncStatus()
	d := fixtureDetail(t, st)
	m, src := liveModel(t, st, d)
	m = press(t, m, "5")
	if len(m.eventIdx) != len(d.Recent) || m.eventIdx[0] != len(d.Recent)-1 {
		t.Fatalf("events not newest first: %v", m.eventIdx[:3])
	}
	m = press(t, m, "/", "c", "l", "i", "n")
	if !m.filtering {
		t.Fatal("/ does not start a filter")
	}
	for _, i := range m.eventIdx {
		if d.Recent[i].Actor != "clinic_tablet" {
			t.Fatalf("filter /clin kept %s", d.Recent[i].Actor)
		}
	}
	if len(m.eventIdx) != 10 {
		t.Errorf("%d events match /clin, want 10", len(m.eventIdx))
	}
	m = press(t, m, "enter", "enter")
	if m.filtering || m.pane == nil || !strings.Contains(m.pane.text, `"sig":`) {
		t.Fatal("enter on an event does not show it signed")
	}
	m = press(t, m, "esc", "esc")
	if m.filter[viewEvents] != "" || len(m.eventIdx) != len(d.Recent) {
		t.Errorf("esc did not clear the filter: %q", m.filter[viewEvents])
	}
	// New events arrive: the list follows.
	more := *st
	more.Backpack.Events++
	nd := fixtureDetail(t, &more)
	nd.Recent = append(nd.Recent, EventRow{Line: more.Backpack.Events, EventID: fakeID("new"), Type: "OBSERVATION", Actor: "north_camp", Summary: "well_9:level = 1"})
	src.mu.Lock()
	src.detail = nd
	src.mu.Unlock()
	m = send(t, m, statusMsg{&more})
	if !strings.Contains(m.View(), "well_9:level = 1") {
		t.Errorf("the new event is not shown:\n%s", m.View())
	}
}

func TestUpdateStateNamespaces(t *testing.T) {
	st := inSyncStatus()
	d := fixtureDetail(t, st)
	m, _ := liveModel(t, st, d)
	m = press(t, m, "6")
	if len(m.stateIdx) != len(d.State) {
		t.Fatalf("%d of %d rows", len(m.stateIdx), len(d.State))
	}
	m = press(t, m, "n")
	if m.stateNS != "contested" || len(m.stateIdx) != 6 {
		t.Fatalf("namespace %q rows %d", m.stateNS, len(m.stateIdx))
	}
	m = press(t, m, "enter")
	if m.pane == nil || !strings.Contains(m.pane.text, "Competing values") || !strings.Contains(m.pane.text, "from clinic_tablet") {
		t.Fatal("a contested belief does not show its competing values")
	}
	m = press(t, m, "esc", "n", "n")
	if m.stateNS != "local" || len(m.stateIdx) != 30 {
		t.Errorf("namespace %q rows %d", m.stateNS, len(m.stateIdx))
	}
	m = press(t, m, "/", "0", "0", "1", "2", "enter")
	if len(m.stateIdx) != 1 || d.State[m.stateIdx[0]].Key != "waterpoint_0012:level" {
		t.Errorf("filter /0012 in local: %v", m.stateIdx)
	}
	m = press(t, m, "G")
	if m.cursor[viewState] != 0 {
		t.Errorf("cursor %d in a one-row list", m.cursor[viewState])
	}
}

func TestUpdateSync(t *testing.T) {
	st := inSyncStatus()
	m, src := liveModel(t, st, fixtureDetail(t, st))
	m = press(t, m, "s")
	if src.syncs != 1 || !strings.Contains(m.msg, "sync requested") {
		t.Errorf("sync: %d requests, message %q", src.syncs, m.msg)
	}
	off := &fakeSource{status: st, detail: fixtureDetail(t, st)}
	mo := NewModel(off, ModelOptions{Now: fixedNow, Dir: "/srv/bp"})
	mo = send(t, mo, runCmd(mo.Init())...)
	mo = press(t, mo, "s")
	if off.syncs != 0 || !mo.msgErr || !strings.Contains(mo.msg, "no agent running") || !strings.Contains(mo.msg, "backpack agent /srv/bp") {
		t.Errorf("sync without an agent: %q", mo.msg)
	}
	// The agent stopped between the key and the request.
	mo = send(t, mo, syncMsg{fmt.Errorf("%w: gone", status.ErrNoAgent)})
	if !strings.Contains(mo.msg, "no agent running") {
		t.Errorf("sync error: %q", mo.msg)
	}
}

func TestUpdateRadio(t *testing.T) {
	st := inSyncStatus()
	m, _ := liveModel(t, st, fixtureDetail(t, st))
	m = press(t, m, "7")
	if !strings.Contains(m.View(), "Radio link: not configured") {
		t.Fatal("radio placeholder missing")
	}
	m = send(t, m, RadioMsg{&status.RadioStatus{Link: "up", Device: "/dev/ttyUSB0", Driver: "rnode", Region: "EU868", AirtimeUsed: 12, AirtimeBudget: 36, Window: time.Hour,
		FramesSent: 120, FramesRecv: 98, FramesLost: 4, HasSignal: true, RSSI: -97, SNR: 6.5, Queue: 14, QueueETA: 3 * time.Minute,
		Peers: []status.RadioPeer{{KeyID: "bp1_0123456789abcdef", LastHeard: fixedNow().Add(-90 * time.Second), InSync: true}}}})
	v := m.View()
	for _, want := range []string{"up  /dev/ttyUSB0 rnode", "12.0s of 36.0s (33%)", "EU868", "lost 4", "RSSI -97 dBm, SNR 6.5 dB", "14 frames waiting, about 3m0s",
		"bp1_0123456789abcdef", "in sync", "heard 1m ago"} {
		if !strings.Contains(v, want) {
			t.Errorf("radio view lacks %q:\n%s", want, v)
		}
	}
}

func TestViewFitsSmallAndLargeTerminals(t *testing.T) {
	st := quarantineStatus()
	st.Held.Forks = 1
	d := quarantineDetail(t, st)
	d.Forks = forkDetail(t, st).Forks
	m, _ := liveModel(t, st, d)
	for _, size := range [][2]int{{80, 24}, {120, 40}, {200, 60}, {40, 12}} {
		m = send(t, m, tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		for v := range numViews {
			m.view = v
			lines := strings.Split(m.View(), "\n")
			if len(lines) != size[1] {
				t.Errorf("%dx%d view %s: %d lines", size[0], size[1], viewNames[v], len(lines))
			}
			for i, l := range lines {
				if w := len([]rune(stripANSI(l))); w > size[0] {
					t.Errorf("%dx%d view %s line %d is %d wide: %q", size[0], size[1], viewNames[v], i, w, l)
				}
			}
		}
	}
}

// stripANSI drops escape sequences (none in the ASCII profile, but the
// test should not depend on it).
func stripANSI(s string) string {
	var b strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case r == 0x1b:
			esc = true
		case esc && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'):
			esc = false
		case !esc:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestNeedText(t *testing.T) {
	for in, want := range map[string]string{
		"actor a: need events after evt_1 (3 events waiting)":                  "need events after evt_1 from actor a (3 wait)",
		"actor b: need events after the start of its chain (1 events waiting)": "need events after the start of its chain from actor b (1 wait)",
		"something else": "something else",
	} {
		if got := needText(in); got != want {
			t.Errorf("needText(%q) = %q, want %q", in, got, want)
		}
	}
}
