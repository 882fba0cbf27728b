package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/textinput"
	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/backpack-field/backpack/internal/status"
)

// view is one screen of the TUI.
type view int

const (
	viewOverview view = iota
	viewPeers
	viewForks
	viewHeld
	viewEvents
	viewState
	viewRadio
	numViews
)

var viewNames = [numViews]string{"Overview", "Peers", "Forks", "Held", "Events", "State", "Radio"}

// How often, with no agent running, the model looks for one and checks
// whether the backpack's files changed (a stat of a few files).
const offlineEvery = 2 * time.Second

// Timeouts of the commands the model runs.
const (
	loadTimeout  = 2 * time.Minute
	queryTimeout = 30 * time.Second
	// trustTimeout leaves Source.Trust time to wait for the lock (the
	// agent's source waits 30 seconds) and then write.
	trustTimeout = 90 * time.Second
)

// ModelOptions configures NewModel.
type ModelOptions struct {
	// Now is the clock for "12s ago" (default time.Now). Tests fix it.
	Now func() time.Time
	// Dir names the backpack in messages ("backpack agent DIR").
	Dir string
}

// Model is the TUI's root model. It is a value: Update returns the new
// model, and View renders it without side effects.
type Model struct {
	src  Source
	now  func() time.Time
	dir  string
	keys keyMap
	st   styles

	width, height int

	status  *status.Status
	live    bool                  // status comes from a subscribed agent
	sub     <-chan *status.Status // the subscription, while live
	stamp   string                // offline: Source.Stamp of the last load
	loadErr string                // the last status could not be read

	detail     *Detail
	detailKey  string // what the status said when detail was asked for
	loading    bool   // a detail load is in flight
	detailErr  string
	eventIdx   []int // Recent rows that pass the filter, newest first
	stateIdx   []int // State rows that pass the filter and namespace
	stateNS    string
	filter     [numViews]string
	filtering  bool
	input      textinput.Model
	view       view
	cursor     [numViews]int
	offset     [numViews]int
	showHelp   bool
	pane       *pane
	confirm    *UntrustedKey // a key waiting for "y" to be trusted
	trusting   string        // the key id being trusted
	msg        string        // footer message
	msgErr     bool
	radio      *status.RadioStatus
	quitting   bool
	statusSeen int // statuses received, for tests and the header
}

// pane is the detail overlay: a title and scrollable text.
type pane struct {
	title string
	text  string
	vp    viewport.Model
}

// NewModel returns the model over src.
func NewModel(src Source, opts ModelOptions) Model {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ti := textinput.New()
	ti.Prompt = "/"
	ti.Placeholder = "filter"
	ti.CharLimit = 200
	ti.Cursor.SetMode(cursor.CursorStatic) // no blinking: frames stay stable
	return Model{src: src, now: opts.Now, dir: opts.Dir, keys: defaultKeys(), st: newStyles(), input: ti, width: 80, height: 24}
}

// Messages.
type (
	// statusMsg is a status from the subscribed agent.
	statusMsg struct{ st *status.Status }
	// subscribedMsg: the agent answered; ch streams its statuses.
	subscribedMsg struct{ ch <-chan *status.Status }
	// agentGoneMsg: the subscription ended.
	agentGoneMsg struct{}
	// offlineMsg is a status built from the backpack on disk.
	offlineMsg struct {
		st    *status.Status
		stamp string
		err   error
	}
	// unchangedMsg: no agent appeared and the files did not change.
	unchangedMsg struct{}
	// tickMsg: time to look for an agent or changes again.
	tickMsg struct{}
	// clockMsg: time to redraw the relative times.
	clockMsg  struct{}
	detailMsg struct {
		d   *Detail
		err error
	}
	syncMsg  struct{ err error }
	trustMsg struct {
		res *TrustResult
		err error
	}
	// RadioMsg updates the radio view (nil: not configured).
	RadioMsg struct{ Status *status.RadioStatus }
)

// Init connects to the agent, or reads the backpack without one, and
// starts the clock that keeps "12s ago" current.
func (m Model) Init() tea.Cmd { return tea.Batch(connect(m.src), clock()) }

// clockEvery is how often the screen is redrawn for the relative times
// it shows; a redraw reads nothing.
const clockEvery = time.Second

func clock() tea.Cmd {
	return tea.Tick(clockEvery, func(time.Time) tea.Msg { return clockMsg{} })
}

// connect subscribes to the agent; with none, it loads the offline
// status.
func connect(src Source) tea.Cmd {
	return func() tea.Msg {
		if ch, err := src.Subscribe(); err == nil {
			return subscribedMsg{ch}
		}
		return loadOffline(src)
	}
}

func loadOffline(src Source) tea.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	stamp := src.Stamp()
	st, err := src.Offline(ctx)
	return offlineMsg{st: st, stamp: stamp, err: err}
}

// probe looks for an agent, then for changed files (offline only).
func probe(src Source, stamp string) tea.Cmd {
	return func() tea.Msg {
		if ch, err := src.Subscribe(); err == nil {
			return subscribedMsg{ch}
		}
		if src.Stamp() == stamp {
			return unchangedMsg{}
		}
		return loadOffline(src)
	}
}

func tick() tea.Cmd {
	return tea.Tick(offlineEvery, func(time.Time) tea.Msg { return tickMsg{} })
}

// wait delivers the next status of the subscription.
func wait(ch <-chan *status.Status) tea.Cmd {
	return func() tea.Msg {
		st, ok := <-ch
		if !ok {
			return agentGoneMsg{}
		}
		return statusMsg{st}
	}
}

func loadDetail(src Source) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
		defer cancel()
		d, err := src.Detail(ctx)
		return detailMsg{d, err}
	}
}

func syncNow(src Source) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		return syncMsg{src.SyncNow(ctx)}
	}
}

func trust(src Source, keyID string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), trustTimeout)
		defer cancel()
		res, err := src.Trust(ctx, keyID)
		return trustMsg{res, err}
	}
}

// Update handles one message. It never blocks: I/O runs in the commands
// it returns.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.resizePane()
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	case subscribedMsg:
		m.sub, m.live = msg.ch, true
		m.loadErr = ""
		return m, wait(msg.ch)
	case statusMsg:
		m.status, m.loadErr = msg.st, ""
		m.radio = msg.st.Radio
		m.statusSeen++
		return m, tea.Batch(wait(m.sub), m.maybeLoad())
	case agentGoneMsg:
		m.sub, m.live = nil, false
		m.setMsg("the agent stopped; showing the backpack as on disk", false)
		return m, connect(m.src)
	case offlineMsg:
		if msg.err != nil {
			m.loadErr = msg.err.Error()
			return m, tick()
		}
		m.status, m.stamp, m.loadErr = msg.st, msg.stamp, ""
		m.radio = msg.st.Radio
		m.statusSeen++
		return m, tea.Batch(tick(), m.maybeLoad())
	case unchangedMsg:
		return m, tick()
	case clockMsg:
		return m, clock()
	case tickMsg:
		if m.live {
			return m, nil // a subscription delivers changes; no polling
		}
		return m, probe(m.src, m.stamp)
	case detailMsg:
		m.loading = false
		if msg.err != nil {
			m.detailErr = msg.err.Error()
		} else {
			m.detail, m.detailErr = msg.d, ""
			m.refilter()
			m.clampCursors()
		}
		return m, m.maybeLoad()
	case syncMsg:
		switch {
		case errors.Is(msg.err, status.ErrNoAgent):
			m.setMsg("no agent running: nothing to sync (start `backpack agent "+m.dirName()+" --peer PATH`)", true)
		case msg.err != nil:
			m.setMsg("sync: "+msg.err.Error(), true)
		default:
			m.setMsg("sync requested: the agent is running a pass", false)
		}
		return m, nil
	case trustMsg:
		m.trusting = ""
		if msg.err != nil {
			m.setMsg("trust: "+msg.err.Error(), true)
			return m, nil
		}
		r := msg.res
		m.setMsg(fmt.Sprintf("trusted %s (%s) by %s: %d events applied, %d still held", r.KeyID, r.Fingerprint, r.EventID, r.Applied, r.StillHeld), false)
		m.detailKey = "" // the quarantine changed: read it again
		return m, m.maybeLoad()
	case RadioMsg:
		m.radio = msg.Status
		return m, nil
	}
	if m.filtering {
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return m, cmd
	}
	return m, nil
}

// changeKey is what decides whether the detail must be read again: the
// backpack's content and the device's held events as the status tells
// them, and offline the files' stamp.
func (m *Model) changeKey() string {
	s := m.status
	if s == nil {
		return ""
	}
	k := fmt.Sprintf("%d/%s/%s/%d/%d/%d", s.Backpack.Events, s.Backpack.StateHash, s.Backpack.MerkleRoot, s.Held.Forks, s.Held.Quarantine, s.Held.Pending)
	if !m.live {
		k += "/" + m.stamp
	}
	return k
}

// maybeLoad starts a detail load when the backpack changed since the
// last one, and none is in flight (it runs again when that one ends).
func (m *Model) maybeLoad() tea.Cmd {
	k := m.changeKey()
	if k == "" || k == m.detailKey || m.loading {
		return nil
	}
	m.detailKey, m.loading = k, true
	return loadDetail(m.src)
}

func (m *Model) setMsg(s string, isErr bool) { m.msg, m.msgErr = s, isErr }

func (m *Model) dirName() string {
	if m.dir != "" {
		return m.dir
	}
	if m.status != nil && m.status.Backpack.Dir != "" {
		return m.status.Backpack.Dir
	}
	return "DIR"
}

// key handles a key press: the overlays first (confirmation, filter
// input, help, detail pane), then the global keys, then the view's.
func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	s := k.String()
	if s == "ctrl+c" {
		m.quitting = true
		return m, tea.Quit
	}
	switch {
	case m.confirm != nil:
		switch s {
		case "y", "Y":
			id := m.confirm.KeyID
			m.confirm, m.trusting = nil, id
			m.setMsg("trusting "+id+": waiting for the backpack's lock...", false)
			return m, trust(m.src, id)
		case "n", "N", "esc", "q":
			m.confirm = nil
			m.setMsg("not trusted", false)
		}
		return m, nil
	case m.filtering:
		switch s {
		case "enter":
			m.filtering = false
			m.input.Blur()
		case "esc":
			m.filtering = false
			m.input.Blur()
			m.input.SetValue("")
			m.filter[m.view] = ""
			m.refilter()
		default:
			var cmd tea.Cmd
			m.input, cmd = m.input.Update(k)
			m.filter[m.view] = m.input.Value()
			m.cursor[m.view], m.offset[m.view] = 0, 0
			m.refilter()
			return m, cmd
		}
		return m, nil
	case m.showHelp:
		switch s {
		case "q":
			m.quitting = true
			return m, tea.Quit
		case "?", "esc", "enter":
			m.showHelp = false
		}
		return m, nil
	case m.pane != nil:
		switch s {
		case "q":
			m.quitting = true
			return m, tea.Quit
		case "esc", "enter", "backspace":
			m.pane = nil
			return m, nil
		}
		var cmd tea.Cmd
		m.pane.vp, cmd = m.pane.vp.Update(k)
		return m, cmd
	}
	if m.trusting == "" {
		m.msg, m.msgErr = "", false // a message stays until the next key
	}
	switch s {
	case "q":
		m.quitting = true
		return m, tea.Quit
	case "?":
		m.showHelp = true
	case "tab", "right", "l":
		m.switchTo((m.view + 1) % numViews)
	case "shift+tab", "left", "h":
		m.switchTo((m.view + numViews - 1) % numViews)
	case "1", "2", "3", "4", "5", "6", "7":
		m.switchTo(view(s[0] - '1'))
	case "up", "k":
		m.move(-1)
	case "down", "j":
		m.move(1)
	case "pgup", "ctrl+u":
		m.move(-m.bodyHeight() / 2)
	case "pgdown", "ctrl+d", " ":
		m.move(m.bodyHeight() / 2)
	case "home", "g":
		m.move(-1 << 30)
	case "end", "G":
		m.move(1 << 30)
	case "enter":
		m.open()
	case "/":
		if m.view == viewEvents || m.view == viewState || m.view == viewPeers {
			m.filtering = true
			m.input.SetValue(m.filter[m.view])
			m.input.CursorEnd()
			return m, m.input.Focus()
		}
		m.setMsg("/ filters the peers, events and state views", false)
	case "esc":
		if m.filter[m.view] != "" {
			m.filter[m.view] = ""
			m.refilter()
		}
	case "n":
		if m.view == viewState {
			m.stateNS = nextNamespace(m.stateNS)
			m.cursor[viewState], m.offset[viewState] = 0, 0
			m.refilter()
		}
	case "s":
		if !m.live {
			m.setMsg("no agent running: nothing to sync (start `backpack agent "+m.dirName()+" --peer PATH`)", true)
			return m, nil
		}
		m.setMsg("asking the agent to sync...", false)
		return m, syncNow(m.src)
	case "t":
		m.askTrust()
	}
	return m, nil
}

func (m *Model) switchTo(v view) {
	if v >= 0 && v < numViews {
		m.view = v
	}
}

// askTrust opens the confirmation for the key under the cursor.
func (m *Model) askTrust() {
	if m.view != viewHeld {
		m.setMsg("t trusts a key: select one in the Held view (4)", false)
		return
	}
	it, ok := m.heldItem(m.cursor[viewHeld])
	if !ok || it.key == nil {
		m.setMsg("select an untrusted key to trust it", false)
		return
	}
	if m.trusting != "" {
		m.setMsg("already trusting "+m.trusting, true)
		return
	}
	if !it.key.Seen {
		m.setMsg("its public key was not in any bundle: run `backpack trust "+m.dirName()+" KEYFILE` with its holder's keys.json", true)
		return
	}
	k := *it.key
	m.confirm = &k
}

// move moves the cursor of the current view by d rows.
func (m *Model) move(d int) {
	n := m.rows()
	if n == 0 {
		m.offset[m.view] = max(0, min(m.offset[m.view]+d, m.scrollMax()))
		return
	}
	c := m.cursor[m.view] + d
	m.cursor[m.view] = max(0, min(c, n-1))
	m.keepVisible()
}

// rows is how many selectable rows the current view has (0: it scrolls).
func (m *Model) rows() int {
	switch m.view {
	case viewPeers:
		return len(m.peerIdx())
	case viewForks:
		if m.detail != nil {
			return len(m.detail.Forks)
		}
	case viewHeld:
		return len(m.heldItems())
	case viewEvents:
		return len(m.eventIdx)
	case viewState:
		return len(m.stateIdx)
	}
	return 0
}

func (m *Model) clampCursors() {
	saved := m.view
	for v := range numViews {
		m.view = v
		if n := m.rows(); m.cursor[v] >= n {
			m.cursor[v] = max(0, n-1)
		}
		m.keepVisible()
	}
	m.view = saved
}

// refilter recomputes the filtered rows of the events and state views.
func (m *Model) refilter() {
	m.eventIdx, m.stateIdx = m.eventIdx[:0], m.stateIdx[:0]
	if m.detail == nil {
		return
	}
	words := strings.Fields(strings.ToLower(m.filter[viewEvents]))
	for i := len(m.detail.Recent) - 1; i >= 0; i-- {
		r := &m.detail.Recent[i]
		if matches(words, r.Namespace, r.Type, r.Actor, r.EventID, r.Summary) {
			m.eventIdx = append(m.eventIdx, i)
		}
	}
	words = strings.Fields(strings.ToLower(m.filter[viewState]))
	for i := range m.detail.State {
		r := &m.detail.State[i]
		if m.stateNS != "" && r.Namespace != m.stateNS {
			continue
		}
		if matches(words, r.Namespace, r.Key, r.Summary) {
			m.stateIdx = append(m.stateIdx, i)
		}
	}
	m.clampCursors()
}

// matches reports whether every word is in one of the fields (any case).
func matches(words []string, fields ...string) bool {
	for _, w := range words {
		found := false
		for _, f := range fields {
			if containsFold(f, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// containsFold is strings.Contains ignoring ASCII case; w is lower case.
func containsFold(s, w string) bool {
	if len(w) > len(s) {
		return false
	}
	for i := 0; i+len(w) <= len(s); i++ {
		j := 0
		for j < len(w) {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != w[j] {
				break
			}
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

var namespaces = []string{"", "contested", "canonical", "local", "archived"}

func nextNamespace(ns string) string {
	for i, n := range namespaces {
		if n == ns {
			return namespaces[(i+1)%len(namespaces)]
		}
	}
	return ""
}
