package tui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/viewport"
	"github.com/charmbracelet/x/ansi"

	"github.com/backpack-field/backpack/internal/status"
	bplog "github.com/backpack-field/backpack/log"
)

// ago says how long before now t was, shortly.
func (m *Model) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := m.now().Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// agoText is ago for a timestamp as the backpack writes it.
func (m *Model) agoText(s string) string {
	if s == "" {
		return "never"
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return m.ago(t)
}

func (m *Model) overviewLines(w int) []string {
	s := m.status
	if s == nil {
		return nil
	}
	row := func(label, text string) string { return fmt.Sprintf("  %-10s%s", label, text) }
	verdict := s.Verdict
	if verdict == "" {
		verdict = "(no verdict)"
	}
	vs := m.st.ok
	if s.Held.Forks > 0 || s.Held.Quarantine > 0 || s.Held.Pending > 0 || strings.Contains(verdict, "no agent") {
		vs = m.st.warn
	}
	if s.Held.Forks > 0 {
		vs = m.st.bad
	}
	out := []string{row("Verdict", vs.Render(verdict)), ""}
	out = append(out, row("Backpack", s.Backpack.UID))
	out = append(out, row("", s.Backpack.Dir))
	out = append(out, row("Device", fmt.Sprintf("%s  key %s", s.Device.Actor, s.Device.KeyID)))
	out = append(out, row("Events", fmt.Sprintf("%s by %s   state %s   root %s",
		thousands(s.Backpack.Events), plural(s.Backpack.Actors, "actor"), short(s.Backpack.StateHash, 12), short(s.Backpack.MerkleRoot, 12))))
	out = append(out, row("Manifest", m.manifestText()))
	out = append(out, row("Agent", m.agentText()))
	out = append(out, row("Held", fmt.Sprintf("%s, %d quarantined, %d pending", plural(s.Held.Forks, "fork"), s.Held.Quarantine, s.Held.Pending)))
	tp := s.Throughput
	if s.Agent.Running || tp.EventsIn+tp.EventsOut > 0 {
		out = append(out, row("Traffic", fmt.Sprintf("in %d events in %d bundles, out %d in %d; %.1f/min in, %.1f/min out",
			tp.EventsIn, tp.BundlesIn, tp.EventsOut, tp.BundlesOut, tp.EventsInPerMin, tp.EventsOutPerMin)))
	}
	out = append(out, "", "  "+m.st.heading.Render("Peer folders"))
	if len(s.Folders) == 0 {
		out = append(out, "    none (the agent syncs through folders given with --peer)")
	}
	for _, f := range s.Folders {
		mode := strings.ToUpper(f.Mode)
		style := m.st.ok
		if f.Mode != "watching" {
			style = m.st.warn
		}
		t := fmt.Sprintf("    %s %s", style.Render(cell(mode, 9)), f.Path)
		if f.FSType != "" {
			t += " [" + f.FSType + "]"
		}
		if f.Reason != "" {
			t += " " + f.Reason
		}
		out = append(out, t)
		if f.LastError != "" {
			out = append(out, "              "+m.st.bad.Render("error: "+f.LastError))
		}
	}
	if len(s.Errors) > 0 {
		out = append(out, "", "  "+m.st.heading.Render("Recent errors"))
		errs := s.Errors
		if len(errs) > 5 {
			errs = errs[len(errs)-5:]
		}
		for i := len(errs) - 1; i >= 0; i-- {
			e := errs[i]
			out = append(out, fmt.Sprintf("    %-9s %s: %s", m.ago(e.At), e.Where, e.Message))
		}
	}
	if m.detail != nil && len(m.detail.Problems) > 0 {
		out = append(out, "", "  "+m.st.heading.Render("Could not read"))
		for _, p := range m.detail.Problems {
			out = append(out, "    "+p)
		}
	}
	return out
}

func (m *Model) manifestText() string {
	d := m.detail
	if d == nil {
		return "checking..."
	}
	switch d.Manifest {
	case "ok":
		return m.st.ok.Render("manifest.sig ok") + ", signed by " + d.ManifestBy
	case "stale":
		return m.st.warn.Render("manifest.sig stale") + ": it signs an older Merkle root (run `backpack manifest`)"
	case "absent":
		return m.st.warn.Render("no manifest.sig") + ": the Merkle root is not signed"
	}
	return m.st.bad.Render("manifest.sig " + d.Manifest)
}

func (m *Model) agentText() string {
	a := m.status.Agent
	if !m.live {
		t := "not running"
		if !a.LastPass.IsZero() {
			t += "; the last agent's last pass was " + m.ago(a.LastPass)
		}
		return m.st.warn.Render(t)
	}
	t := fmt.Sprintf("running, pid %d, up %s, %d passes, last pass %s", a.PID, strings.TrimSuffix(m.ago(a.StartedAt), " ago"), a.Passes, m.ago(a.LastPass))
	if a.Waiting != "" {
		t += "; " + a.Waiting
	}
	return t
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// peerIdx lists the peers that pass the filter.
func (m *Model) peerIdx() []int {
	if m.status == nil {
		return nil
	}
	words := strings.Fields(strings.ToLower(m.filter[viewPeers]))
	var out []int
	for i, p := range m.status.Peers {
		if matches(words, p.Actor, p.KeyID, p.Folder) {
			out = append(out, i)
		}
	}
	return out
}

// peerDetailLines is how many lines the selected peer's details take
// below the table.
const peerDetailLines = 7

func (m *Model) peersView(w, h int) []string {
	s := m.status
	idx := m.peerIdx()
	title := fmt.Sprintf("  %d peers heard from", len(s.Peers))
	if f := m.filter[viewPeers]; f != "" {
		title += fmt.Sprintf(", %d match /%s", len(idx), f)
	}
	out := []string{title}
	if len(s.Peers) == 0 {
		return append(out, "", "  No other device has written to the peer folders yet.",
			"  Devices meet through folders given to `backpack agent DIR --peer PATH`.")
	}
	out = append(out, m.st.bold.Render(fmt.Sprintf("  %-16s %-20s %-9s %9s %7s %4s %4s", "PEER", "VIA", "CONTACT", "THEY LACK", "WE LACK", "IN", "OUT")))
	rows := m.listHeight()
	off := listOffset(m.cursor[viewPeers], m.offset[viewPeers], rows)
	for j := off; j < len(idx) && j < off+rows; j++ {
		p := s.Peers[idx[j]]
		mark := "  "
		if j == m.cursor[viewPeers] {
			mark = "> "
		}
		name := p.Actor
		if name == "" {
			name = p.KeyID
		}
		if !p.Trusted || p.LastError != "" {
			name = "!" + name
		}
		t := fmt.Sprintf("%s%-16s %-20s %-9s %9d %7d %4d %4d", mark, cell(name, 16), cellLeft(p.Folder, 20),
			cell(m.agoText(p.LastContact), 9), p.TheyLack, p.WeLack, p.BundlesIn, p.BundlesOut)
		if j == m.cursor[viewPeers] {
			t = m.st.cursor.Render(t)
		}
		out = append(out, t)
	}
	if len(idx) == 0 {
		return out
	}
	p := s.Peers[idx[min(m.cursor[viewPeers], len(idx)-1)]]
	trust := m.st.ok.Render("trusted")
	if !p.Trusted {
		trust = m.st.warn.Render("NOT trusted: its events wait in the quarantine (view 4)")
	}
	state := "in sync"
	if p.TheyLack > 0 || p.WeLack > 0 {
		state = fmt.Sprintf("it lacks %d of our events, we lack %d of its", p.TheyLack, p.WeLack)
	}
	out = append(out, "",
		fmt.Sprintf("  %s  %s  fingerprint %s", m.st.bold.Render(p.Actor), p.KeyID, fingerprint(p.KeyID)),
		"  medium    "+medium(p),
		"  contact   "+orNever(p.LastContact)+" ("+m.agoText(p.LastContact)+")",
		"  key       "+trust,
		"  sync      "+state+fmt.Sprintf("; bundles in %d, out %d", p.BundlesIn, p.BundlesOut))
	if p.LastError != "" {
		out = append(out, "  "+m.st.bad.Render("error     "+p.LastError))
	}
	return out
}

// medium says how a peer is reached.
func medium(p status.PeerStatus) string {
	if p.Medium == "radio" {
		return p.Folder // "radio <serial device>"
	}
	return "folder " + p.Folder
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

// fingerprint groups a key id's hex digits by four, as store.Fingerprint
// does.
func fingerprint(keyID string) string {
	hex := strings.TrimPrefix(keyID, "bp1_")
	if len(hex) != 16 {
		return "-"
	}
	return hex[0:4] + " " + hex[4:8] + " " + hex[8:12] + " " + hex[12:16]
}

// forkLines renders every fork as a block, its sides side by side.
func (m *Model) forkLines(w int) []line {
	if m.detail == nil {
		if m.forkCount() > 0 {
			return []line{{"  " + plural(m.forkCount(), "fork") + " recorded; reading the competing events...", -1}}
		}
		return []line{{"  Reading the backpack...", -1}}
	}
	forks := m.detail.Forks
	if len(forks) == 0 {
		return []line{{"", -1}, {"  No forks: every actor's history is one chain.", -1},
			{"  A fork is two different events of one actor after the same event; both", -1},
			{"  are kept as evidence and shown here with where each came from.", -1}}
	}
	out := []line{{fmt.Sprintf("  %s; enter shows the full signed events", plural(len(forks), "fork")), -1}}
	for i, f := range forks {
		at := f.ForkPoint
		if at == "" {
			at = "its start"
		}
		kind := "split after " + short(at, 16) + "…"
		if f.Kind == bplog.ForkSameID {
			kind = "has two contents for " + short(at, 16) + "…"
		}
		title := fmt.Sprintf("  FORK %d/%d  %s %s; detected %s", i+1, len(forks), m.st.bold.Render(f.Actor), kind, detectedShort(f.DetectedAt))
		out = append(out, line{title, i})
		for _, l := range sideBySide(f.Sides, w-4) {
			out = append(out, line{"    " + l, i})
		}
		out = append(out, line{"", i})
	}
	return out
}

// sideBySide lays the competing events out in columns.
func sideBySide(sides []ForkSide, w int) []string {
	if len(sides) == 0 {
		return []string{"(no competing events recorded)"}
	}
	n := min(len(sides), max(1, w/24))
	colW := w/n - 1
	var cols [][]string
	for i, s := range sides[:n] {
		id := s.EventID
		if id == "" {
			id = "(unknown id)"
		}
		typ := s.Type
		if s.Line == "" {
			typ = "not found in the log"
		}
		cols = append(cols, []string{
			fmt.Sprintf("%c %s", 'A'+rune(i), id),
			"  " + typ + " " + shortTime(s.Timestamp),
			"  " + orDash(s.Summary),
			"  from " + orDash(s.Source),
		})
	}
	var out []string
	for r := range cols[0] {
		var b strings.Builder
		for c := range cols {
			b.WriteString(cell(cols[c][r], colW))
			if c < len(cols)-1 {
				b.WriteString(" ")
			}
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	if len(sides) > n {
		out = append(out, fmt.Sprintf("... and %d more sides (enter)", len(sides)-n))
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// detectedShort is "03-14 11:52" from a backpack timestamp.
func detectedShort(s string) string {
	if len(s) >= 16 && s[10] == 'T' {
		return s[5:10] + " " + s[11:16]
	}
	return s
}

// shortTime is "2026-03-01 09:00:05" from a backpack timestamp.
func shortTime(s string) string {
	if len(s) >= 19 && s[10] == 'T' {
		return s[:10] + " " + s[11:19]
	}
	return s
}

// heldItem is one selectable row of the held view.
type heldItem struct {
	key      *UntrustedKey
	held     *Held
	kind     string // "quarantine", "pending"
	rejected *RejectedFile
}

func (m *Model) heldItems() []heldItem {
	d := m.detail
	if d == nil {
		return nil
	}
	var out []heldItem
	for i := range d.Keys {
		out = append(out, heldItem{key: &d.Keys[i]})
	}
	for i := range d.Pending {
		out = append(out, heldItem{held: &d.Pending[i], kind: "pending"})
	}
	for i := range d.Quarantine {
		out = append(out, heldItem{held: &d.Quarantine[i], kind: "quarantine"})
	}
	for i := range d.Rejected {
		out = append(out, heldItem{rejected: &d.Rejected[i]})
	}
	return out
}

func (m *Model) heldItem(i int) (heldItem, bool) {
	items := m.heldItems()
	if i < 0 || i >= len(items) {
		return heldItem{}, false
	}
	return items[i], true
}

func (m *Model) heldLines(w int) []line {
	d := m.detail
	if d == nil {
		return []line{{"  Reading the backpack...", -1}}
	}
	var out []line
	item := 0
	head := func(s string) { out = append(out, line{"  " + m.st.heading.Render(s), -1}) }
	if len(d.Keys)+len(d.Pending)+len(d.Quarantine)+len(d.Rejected) == 0 {
		return []line{{"", -1}, {"  Nothing held: no quarantined, pending or rejected events, no untrusted keys.", -1}}
	}
	if len(d.Keys) > 0 {
		head(fmt.Sprintf("Untrusted keys (%d): events they signed wait in the quarantine", len(d.Keys)))
		for _, k := range d.Keys {
			t := fmt.Sprintf("  %s  %s  %s wait", k.KeyID, k.Fingerprint, plural(k.Waiting, "event"))
			if k.Seen {
				t += "  [t trust]"
			} else {
				t += "  (public key not seen: trust it with its keys.json)"
			}
			out = append(out, line{t, item})
			if k.Seen && len(k.Sources) > 0 {
				out = append(out, line{"      seen in " + strings.Join(k.Sources, ", "), item})
			}
			item++
		}
		out = append(out, line{"", -1})
	}
	if len(d.Pending) > 0 || (m.status != nil && len(m.status.Held.Needs) > 0) {
		head(fmt.Sprintf("Pending (%d): waiting for a missing predecessor", len(d.Pending)))
		if m.status != nil {
			for _, n := range m.status.Held.Needs {
				out = append(out, line{"  " + m.st.warn.Render(needText(n)), -1})
			}
		}
		for _, h := range d.Pending {
			out = append(out, line{fmt.Sprintf("  %s  %s  from %s", orDash(h.EventID), h.Actor, orDash(h.Source)), item})
			item++
		}
		out = append(out, line{"", -1})
	}
	if len(d.Quarantine) > 0 {
		head(fmt.Sprintf("Quarantine (%d)", len(d.Quarantine)))
		for _, h := range d.Quarantine {
			id := h.EventID
			if id == "" {
				id = "(no event id)"
			}
			out = append(out, line{fmt.Sprintf("  %s  %s  from %s", id, orDash(h.Actor), orDash(h.Source)), item})
			out = append(out, line{"      " + h.Reason, item})
			item++
		}
		out = append(out, line{"", -1})
	}
	if len(d.Rejected) > 0 {
		head(fmt.Sprintf("Rejected bundles (%d)", len(d.Rejected)))
		for _, r := range d.Rejected {
			out = append(out, line{"  " + r.File, item})
			out = append(out, line{"      " + r.Reason, item})
			item++
		}
	}
	return out
}

// needText rewords the agent's "actor A: need events after evt_X (n
// events waiting)" as "need events after evt_X from actor A; n wait for
// them". Text of another shape is shown as it is.
func needText(s string) string {
	actor, rest, ok := strings.Cut(s, ": need events after ")
	if !ok || !strings.HasPrefix(actor, "actor ") {
		return s
	}
	after, count, ok := strings.Cut(rest, " (")
	n, ok2 := strings.CutSuffix(count, " events waiting)")
	if !ok || !ok2 {
		return s
	}
	return fmt.Sprintf("need events after %s from %s (%s wait)", after, actor, n)
}

func (m *Model) eventsView(w, h int) []string {
	d := m.detail
	if d == nil {
		return []string{"  Reading the backpack..."}
	}
	title := fmt.Sprintf("  %d newest of %s events", len(d.Recent), thousands(d.RecentOf))
	if m.live {
		title += " (live)"
	}
	if f := m.filter[viewEvents]; f != "" {
		title += fmt.Sprintf("; %d match /%s", len(m.eventIdx), f)
	}
	out := []string{title, m.st.bold.Render(fmt.Sprintf("  %-6s %-8s %-12s %-14s %s", "LINE", "TIME", "TYPE", "ACTOR", "WHAT"))}
	rows := m.listHeight()
	off := listOffset(m.cursor[viewEvents], m.offset[viewEvents], rows)
	for j := off; j < len(m.eventIdx) && j < off+rows; j++ {
		r := d.Recent[m.eventIdx[j]]
		mark := "  "
		if j == m.cursor[viewEvents] {
			mark = "> "
		}
		tm := ""
		if len(r.Timestamp) >= 19 {
			tm = r.Timestamp[11:19]
		}
		t := fmt.Sprintf("%s%-6d %-8s %s %s %s", mark, r.Line, tm, cell(r.Type, 12), cell(r.Actor, 14), r.Summary)
		t = fit(t, w)
		if j == m.cursor[viewEvents] {
			t = m.st.cursor.Render(t)
		}
		out = append(out, t)
	}
	if len(m.eventIdx) == 0 {
		out = append(out, "  (no events match)")
	}
	return out
}

func (m *Model) stateView(w, h int) []string {
	d := m.detail
	if d == nil {
		return []string{"  Reading the backpack..."}
	}
	ns := m.stateNS
	if ns == "" {
		ns = "all"
	}
	title := fmt.Sprintf("  %s entries, %d contested; namespace %s (n: next)", thousands(d.StateTotal), d.Contested, ns)
	if f := m.filter[viewState]; f != "" || m.stateNS != "" {
		title += fmt.Sprintf("; %d shown", len(m.stateIdx))
		if f != "" {
			title += " for /" + f
		}
	}
	if len(d.State) < d.StateTotal {
		title += fmt.Sprintf(" (first %s read)", thousands(len(d.State)))
	}
	out := []string{title}
	if d.ReducerFailed != "" {
		out = append(out, "  "+m.st.bad.Render("reducer stopped: "+d.ReducerFailed))
	} else {
		out = append(out, m.st.bold.Render(fmt.Sprintf("  %-10s %-30s %s", "NAMESPACE", "BELIEF", "VALUE")))
	}
	rows := m.listHeight()
	off := listOffset(m.cursor[viewState], m.offset[viewState], rows)
	for j := off; j < len(m.stateIdx) && j < off+rows; j++ {
		r := d.State[m.stateIdx[j]]
		mark := "  "
		if j == m.cursor[viewState] {
			mark = "> "
		}
		nsText := r.Namespace
		if r.Namespace == "contested" {
			nsText = "CONTESTED"
		}
		t := fit(fmt.Sprintf("%s%s %s %s", mark, cell(nsText, 10), cell(r.Key, 30), r.Summary), w)
		if j == m.cursor[viewState] {
			t = m.st.cursor.Render(t)
		}
		out = append(out, t)
	}
	if len(m.stateIdx) == 0 {
		out = append(out, "  (no entries match)")
	}
	return out
}

func (m *Model) radioLines(w int) []string {
	r := m.radio
	if r == nil {
		return []string{"",
			"  " + m.st.warn.Render("Radio link: not configured."),
			"",
			"  Start the agent with --lora DEVICE (an RNode, or --lora-driver kiss for",
			"  a KISS TNC) to sync with devices in radio range. This view then shows:",
			"",
			"    link state      up / down, and the serial device",
			"    airtime         used against the duty-cycle budget of the window",
			"    frames          sent, received, lost",
			"    signal          RSSI and SNR of the last frame",
			"    queue           frames waiting for airtime, with an estimate",
			"    peers           devices heard, in sync or not, events to send",
		}
	}
	pct := 0.0
	if r.AirtimeBudget > 0 {
		pct = 100 * r.AirtimeUsed / r.AirtimeBudget
	}
	airtime := fmt.Sprintf("%.1fs of %.1fs (%.0f%%) in the last %s, %s", r.AirtimeUsed, r.AirtimeBudget, pct, r.Window, r.Region)
	if r.AirtimeBudget == 0 {
		airtime = fmt.Sprintf("%.1fs, no duty-cycle limit (%s)", r.AirtimeUsed, r.Region)
	}
	signal := "no frame heard yet"
	if r.HasSignal {
		signal = fmt.Sprintf("RSSI %.0f dBm, SNR %.1f dB", r.RSSI, r.SNR)
	}
	out := []string{"",
		fmt.Sprintf("  %-14s %s  %s %s", "Link", r.Link, r.Device, r.Driver),
		fmt.Sprintf("  %-14s %s", "Airtime", airtime),
		fmt.Sprintf("  %-14s sent %d, received %d, lost %d; %d events in", "Frames", r.FramesSent, r.FramesRecv, r.FramesLost, r.EventsIn),
		fmt.Sprintf("  %-14s %s", "Signal", signal),
		fmt.Sprintf("  %-14s %d frames waiting, about %s", "Queue", r.Queue, r.QueueETA),
		"",
	}
	if len(r.Peers) == 0 {
		return append(out, "  No device heard over the radio yet.")
	}
	out = append(out, "  Devices in radio range:")
	for _, p := range r.Peers {
		sync := "behind"
		if p.InSync {
			sync = "in sync"
		}
		heard := "never heard"
		if !p.LastHeard.IsZero() {
			heard = "heard " + m.ago(p.LastHeard)
		}
		out = append(out, fmt.Sprintf("    %-22s %-8s %s, %d events to send", p.KeyID, sync, heard, p.ToSend))
	}
	return out
}

func (m *Model) confirmView(w int) []string {
	k := m.confirm
	out := []string{"",
		"  " + m.st.bold.Render("Trust key "+k.KeyID+"?"),
		"",
		"    fingerprint  " + m.st.bold.Render(k.Fingerprint),
		"    waiting      " + plural(k.Waiting, "event") + " in the quarantine",
	}
	if len(k.Sources) > 0 {
		out = append(out, "    seen in      "+strings.Join(k.Sources, ", "))
	}
	if k.FirstSeen != "" {
		out = append(out, "    seen         "+shortTime(k.FirstSeen)+" to "+shortTime(k.LastSeen))
	}
	out = append(out, "",
		"  Compare the fingerprint with the one `backpack join` printed on the",
		"  other device (read it aloud). Trusting appends a signed KEY_PROMOTION",
		"  event that every replica applies, and releases the waiting events.",
		"",
		"  "+m.st.bold.Render("y")+" trust it    "+m.st.bold.Render("n")+" or esc: cancel")
	return out
}

// open shows the details of the selected row in the pane.
func (m *Model) open() {
	var title string
	var text []string
	switch m.view {
	case viewPeers:
		idx := m.peerIdx()
		if len(idx) == 0 {
			return
		}
		p := m.status.Peers[idx[m.cursor[viewPeers]]]
		title = "Peer " + p.Actor
		text = peerText(p)
	case viewForks:
		if m.detail == nil || len(m.detail.Forks) == 0 {
			return
		}
		f := m.detail.Forks[m.cursor[viewForks]]
		title = fmt.Sprintf("Fork of %s", f.Actor)
		text = forkText(f)
	case viewHeld:
		it, ok := m.heldItem(m.cursor[viewHeld])
		if !ok {
			return
		}
		title, text = heldText(it)
	case viewEvents:
		if len(m.eventIdx) == 0 {
			return
		}
		r := m.detail.Recent[m.eventIdx[m.cursor[viewEvents]]]
		title = fmt.Sprintf("Event %s (line %d)", r.EventID, r.Line)
		text = append([]string{fmt.Sprintf("%s by %s at %s", r.Type, r.Actor, r.Timestamp), r.Summary, "", "Signed event:"}, pretty(r.Raw)...)
	case viewState:
		if len(m.stateIdx) == 0 {
			return
		}
		r := m.detail.State[m.stateIdx[m.cursor[viewState]]]
		title = r.Namespace + " " + r.Key
		text = []string{r.Summary}
		if len(r.Competing) > 0 {
			text = append(text, "", "Competing values:")
			for _, c := range r.Competing {
				text = append(text, "  "+c)
			}
		}
		text = append(text, "", "Entry:")
		text = append(text, pretty(r.Raw)...)
	default:
		return
	}
	m.pane = &pane{title: title, text: strings.Join(text, "\n")}
	m.resizePane()
}

// resizePane fits the pane's viewport to the body, wrapping its text.
func (m *Model) resizePane() {
	if m.pane == nil {
		return
	}
	w, h := max(m.width, 20), m.bodyHeight()
	y := 0
	if m.pane.vp.Height > 0 {
		y = m.pane.vp.YOffset
	}
	m.pane.vp = viewport.New(w, h)
	content := m.st.bold.Render(m.pane.title) + "\n\n" + ansi.Hardwrap(m.pane.text, w-1, true)
	m.pane.vp.SetContent(content)
	m.pane.vp.SetYOffset(y)
}

func peerText(p status.PeerStatus) []string {
	out := []string{
		"key id        " + p.KeyID,
		"fingerprint   " + fingerprint(p.KeyID),
		fmt.Sprintf("trusted       %v", p.Trusted),
		"medium        " + medium(p),
		"last contact  " + orNever(p.LastContact) + " (its frontier's updated_at_utc)",
		fmt.Sprintf("they lack     %d events (from its frontier)", p.TheyLack),
		fmt.Sprintf("we lack       %d events", p.WeLack),
		fmt.Sprintf("bundles       %d imported from it, %d of ours in the folder", p.BundlesIn, p.BundlesOut),
	}
	if p.LastError != "" {
		out = append(out, "last error    "+p.LastError)
	}
	return out
}

func forkText(f Fork) []string {
	out := []string{
		"actor         " + f.Actor,
		"kind          " + f.Kind,
		"fork point    " + orDash(f.ForkPoint),
		"detected      " + orDash(f.DetectedAt),
		"",
		"Both events are kept as evidence; nothing was resolved for you.",
	}
	for i, s := range f.Sides {
		out = append(out, "", fmt.Sprintf("Side %c: %s", 'A'+rune(i), orDash(s.EventID)),
			"  brought by  "+orDash(s.Source),
			"  found       "+orDash(s.Where),
			"  "+s.Type+" at "+s.Timestamp,
			"  "+s.Summary)
		if s.Line != "" {
			out = append(out, "  signed event:")
			for _, l := range pretty(s.Line) {
				out = append(out, "    "+l)
			}
		} else {
			out = append(out, "  (the signed event was not found in the log or the held evidence)")
		}
	}
	return out
}

func heldText(it heldItem) (string, []string) {
	switch {
	case it.key != nil:
		k := it.key
		out := []string{
			"fingerprint   " + k.Fingerprint,
			fmt.Sprintf("waiting       %d events in the quarantine", k.Waiting),
		}
		if k.Seen {
			out = append(out, "seen in       "+strings.Join(k.Sources, ", "), "seen          "+k.FirstSeen+" to "+k.LastSeen,
				"", "Press esc, then t, to trust it after comparing the fingerprint.")
		} else {
			out = append(out, "", "No bundle carried its public key: trust it with `backpack trust DIR KEYFILE`.")
		}
		return "Untrusted key " + k.KeyID, out
	case it.held != nil:
		h := it.held
		out := []string{
			"actor         " + orDash(h.Actor),
			"key           " + orDash(h.KeyID),
			"from          " + orDash(h.Source),
			"reason        " + h.Reason,
			"", "Event as received:",
		}
		out = append(out, pretty(h.Line)...)
		return it.kind + " " + orDash(h.EventID), out
	case it.rejected != nil:
		r := it.rejected
		return "Rejected bundle", []string{"file          " + r.File, "held at       " + r.At, "reason        " + r.Reason}
	}
	return "", nil
}

// pretty indents a JSON line for reading; other text is returned as is.
func pretty(s string) []string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(s), "", "  ") != nil {
		return []string{s}
	}
	return strings.Split(b.String(), "\n")
}
