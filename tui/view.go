package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// line is one line of a view's body; item is the index of the selectable
// item it belongs to (-1 for none).
type line struct {
	text string
	item int
}

// View renders the screen from the model alone.
func (m Model) View() string {
	if m.quitting {
		return ""
	}
	w := max(m.width, 20)
	var out []string
	out = append(out, m.header(w))
	if b := m.banner(w); b != "" {
		out = append(out, b)
	}
	out = append(out, m.tabs(w))
	h := m.bodyHeight()
	body := m.body(w, h)
	for i := range h {
		l := ""
		if i < len(body) {
			l = body[i]
		}
		out = append(out, fit(l, w))
	}
	out = append(out, m.footer(w))
	return strings.Join(out, "\n")
}

// bodyHeight is the number of lines between the tabs and the footer.
func (m *Model) bodyHeight() int {
	h := max(m.height, 8) - 3
	if m.forkCount() > 0 {
		h--
	}
	return max(h, 1)
}

// fit cuts s to w cells.
func fit(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, w, "…")
}

// spread puts left and right on one line of width w, cutting left.
func spread(left, right string, w int) string {
	rw := ansi.StringWidth(right)
	if rw >= w {
		return fit(right, w)
	}
	left = fit(left, w-rw-1)
	gap := w - ansi.StringWidth(left) - rw
	return left + strings.Repeat(" ", max(gap, 1)) + right
}

func (m *Model) header(w int) string {
	s := m.status
	left := "backpack"
	if s != nil {
		left += "  " + short(s.Backpack.UID, 8) + "  " + s.Device.Actor
	}
	var right string
	switch {
	case s == nil:
		right = "connecting..."
	case m.live:
		right = m.st.ok.Render(fmt.Sprintf("agent running, pid %d", s.Agent.PID))
	default:
		right = m.st.warn.Render("no agent running: showing the backpack as on disk")
	}
	return spread(m.st.title.Render(left), right, w)
}

func (m *Model) forkCount() int {
	n := 0
	if m.status != nil {
		n = m.status.Held.Forks
	}
	if m.detail != nil {
		n = max(n, len(m.detail.Forks))
	}
	return n
}

// banner is the line that makes forks impossible to miss.
func (m *Model) banner(w int) string {
	n := m.forkCount()
	if n == 0 {
		return ""
	}
	who := ""
	if m.detail != nil {
		var actors []string
		seen := map[string]bool{}
		for _, f := range m.detail.Forks {
			if !seen[f.Actor] {
				seen[f.Actor] = true
				actors = append(actors, f.Actor)
			}
		}
		if len(actors) > 0 {
			who = " of " + strings.Join(actors, ", ")
		}
	}
	text := fmt.Sprintf("!! FORK: %s: history%s split; press 3 to see both sides !!", plural(n, "fork"), who)
	text = fit(text, w)
	pad := w - ansi.StringWidth(text)
	text = strings.Repeat(" ", pad/2) + text + strings.Repeat(" ", pad-pad/2)
	return m.st.banner.Render(text)
}

func (m *Model) tabs(w int) string {
	var parts []string
	for v := range numViews {
		name := fmt.Sprintf("%d %s", v+1, viewNames[v])
		switch v {
		case viewForks:
			if n := m.forkCount(); n > 0 {
				name += fmt.Sprintf(" (%d!)", n)
			}
		case viewHeld:
			if n := m.heldCount(); n > 0 {
				name += fmt.Sprintf(" (%d)", n)
			}
		}
		if v == m.view {
			parts = append(parts, m.st.tabActive.Render("["+name+"]"))
		} else {
			parts = append(parts, m.st.tab.Render(" "+name+" "))
		}
	}
	return fit(strings.Join(parts, ""), w)
}

func (m *Model) heldCount() int {
	if m.status == nil {
		return 0
	}
	return m.status.Held.Quarantine + m.status.Held.Pending
}

func (m *Model) footer(w int) string {
	if m.filtering {
		return fit(m.input.View(), w)
	}
	hints := "? help  q quit"
	if m.pane != nil {
		hints = "up/down scroll  esc back  q quit"
	}
	msg := m.msg
	switch {
	case m.loadErr != "":
		msg = "error: " + m.loadErr
	case msg == "" && m.detailErr != "":
		msg = "error reading details: " + m.detailErr
	case msg == "" && m.loading && m.detail == nil:
		msg = "reading the backpack..."
	}
	style := m.st.footer
	if m.msgErr || m.loadErr != "" || (m.msg == "" && m.detailErr != "") {
		style = m.st.footerErr
	}
	return spread(style.Render(msg), m.st.footer.Render(hints), w)
}

// body renders the current view, or the overlay above it.
func (m *Model) body(w, h int) []string {
	switch {
	case m.confirm != nil:
		return m.confirmView(w)
	case m.showHelp:
		return m.helpView()
	case m.pane != nil:
		return strings.Split(m.pane.vp.View(), "\n")
	case m.status == nil && m.loadErr != "":
		return []string{"", "  Cannot read the backpack: " + m.loadErr}
	case m.status == nil:
		return []string{"", "  Connecting to the agent, or reading the backpack..."}
	}
	switch m.view {
	case viewOverview:
		return scroll(m.overviewLines(w), m.offset[viewOverview], h)
	case viewPeers:
		return m.peersView(w, h)
	case viewForks:
		return m.window(m.forkLines(w), h)
	case viewHeld:
		return m.window(m.heldLines(w), h)
	case viewEvents:
		return m.eventsView(w, h)
	case viewState:
		return m.stateView(w, h)
	case viewRadio:
		return m.radioLines(w)
	}
	return nil
}

// scroll returns h lines of ls from off.
func scroll(ls []string, off, h int) []string {
	off = max(0, min(off, len(ls)-h))
	return ls[off:min(len(ls), off+h)]
}

// scrollMax is how far the current (non-list) view scrolls.
func (m *Model) scrollMax() int {
	if m.view == viewOverview && m.status != nil {
		return max(0, len(m.overviewLines(m.width))-m.bodyHeight())
	}
	return 0
}

// window shows the lines around the selected item, marking it.
func (m *Model) window(ls []line, h int) []string {
	off := follow(ls, m.cursor[m.view], m.offset[m.view], h)
	var out []string
	for i := off; i < len(ls) && len(out) < h; i++ {
		t := ls[i].text
		if ls[i].item >= 0 && ls[i].item == m.cursor[m.view] && strings.HasPrefix(t, "  ") && isFirst(ls, i) {
			t = "> " + t[2:]
		}
		out = append(out, t)
	}
	return out
}

func isFirst(ls []line, i int) bool { return i == 0 || ls[i-1].item != ls[i].item }

// follow returns the offset that keeps the selected item's lines in a
// window of h lines, moving as little as possible from off.
func follow(ls []line, sel, off, h int) int {
	first, last := -1, -1
	for i, l := range ls {
		if l.item == sel {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return max(0, min(off, len(ls)-h))
	}
	if last >= off+h {
		off = last - h + 1
	}
	if first < off {
		off = first
	}
	return max(0, min(off, max(0, len(ls)-h)))
}

// keepVisible updates the current view's stored offset after the cursor
// moved, so that scrolling back up does not jump.
func (m *Model) keepVisible() {
	w, h := m.width, m.bodyHeight()
	switch m.view {
	case viewForks:
		m.offset[m.view] = follow(m.forkLines(w), m.cursor[m.view], m.offset[m.view], h)
	case viewHeld:
		m.offset[m.view] = follow(m.heldLines(w), m.cursor[m.view], m.offset[m.view], h)
	case viewPeers, viewEvents, viewState:
		m.offset[m.view] = listOffset(m.cursor[m.view], m.offset[m.view], m.listHeight())
	}
}

// listOffset keeps row c in a window of h rows starting near off.
func listOffset(c, off, h int) int {
	h = max(h, 1)
	if c >= off+h {
		off = c - h + 1
	}
	if c < off {
		off = c
	}
	return max(off, 0)
}

// listHeight is the rows a one-line-per-row view shows.
func (m *Model) listHeight() int {
	switch m.view {
	case viewPeers:
		return max(1, min(len(m.peerIdx()), m.bodyHeight()-peerDetailLines-2))
	default:
		return m.bodyHeight() - 2 // a title and a column header
	}
}

func (m *Model) helpView() []string {
	out := []string{"", "  " + m.st.heading.Render("Keys"), ""}
	for _, k := range m.keys {
		out = append(out, fmt.Sprintf("  %-22s %s", k.keys, k.what))
	}
	out = append(out, "",
		"  Views: 1 overview  2 peers  3 forks  4 held (quarantine, pending, keys)",
		"         5 recent events  6 reducer state  7 radio",
		"  Live: the agent's status arrives as it changes; with no agent the",
		"  backpack on disk is shown and checked for changes every 2s.",
		"", "  Press ? or esc to close.")
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// short is the first n characters of s, or s.
func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// cell pads or cuts s to exactly w cells.
func cell(s string, w int) string {
	s = fit(s, w)
	if d := w - lipgloss.Width(s); d > 0 {
		s += strings.Repeat(" ", d)
	}
	return s
}

// cellLeft is cell keeping the end of s (the telling part of a path).
func cellLeft(s string, w int) string {
	if ansi.StringWidth(s) > w {
		s = ansi.TruncateLeft(s, ansi.StringWidth(s)-w+1, "…")
	}
	return cell(s, w)
}
