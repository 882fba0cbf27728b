package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/merkle"
	"github.com/backpack-field/backpack/reducer"
	"github.com/backpack-field/backpack/tui"
)

// Detail reads what the screen shows beyond the status from a read-only
// open of the backpack; a part it cannot read is named in Problems.
func (s *tuiSource) Detail(ctx context.Context) (*tui.Detail, error) {
	b, err := store.Open(ctx, s.dir, store.Options{ReadOnly: true, KeyFile: s.keyFile})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	d := &tui.Detail{}
	snap := b.Snapshot()
	d.EventCount = snap.EventCount
	problem := func(what string, err error) {
		d.Problems = append(d.Problems, what+": "+err.Error())
	}
	if h, err := b.StateHash(); err == nil {
		d.StateHash = h
	} else {
		problem("state hash", err)
	}
	d.Manifest, d.ManifestBy = manifestStatus(s.dir, b.Registry(), snap.MerkleRoot)
	if err := s.loadHeld(b, d); err != nil {
		problem("held events", err)
	}
	if err := s.loadForks(ctx, b, d); err != nil {
		problem("forks", err)
	}
	if err := loadKeys(b, d); err != nil {
		problem("untrusted keys", err)
	}
	d.Rejected = readRejected(filepath.Join(s.devDir, "quarantine"))
	if err := loadState(b, d); err != nil {
		problem("state", err)
	}
	rows, err := recentEvents(filepath.Join(s.dir, store.EventsPath))
	if err != nil {
		problem("recent events", err)
	}
	d.Recent, d.RecentOf = rows, snap.EventCount
	return d, nil
}

func (s *tuiSource) loadHeld(b *store.Backpack, d *tui.Detail) error {
	q, err := b.Held("quarantine")
	if err != nil {
		return err
	}
	p, err := b.Held("pending")
	if err != nil {
		return err
	}
	d.Quarantine, d.Pending = heldRows(q), heldRows(p)
	return nil
}

func heldRows(hs []store.HeldEvent) []tui.Held {
	out := make([]tui.Held, 0, len(hs))
	for _, h := range hs {
		out = append(out, tui.Held{EventID: h.EventID, Actor: h.Actor, KeyID: h.KeyID, Reason: h.Reason, Source: h.Source, Line: h.Line})
	}
	return out
}

// loadForks reads the fork records and finds each competing event: in the
// log (cached by id) or among the events held as fork evidence.
func (s *tuiSource) loadForks(ctx context.Context, b *store.Backpack, d *tui.Detail) error {
	recs, err := b.ForkRecords()
	if err != nil || len(recs) == 0 {
		return err
	}
	evidence, err := b.Held("forks")
	if err != nil {
		return err
	}
	s.mu.Lock()
	want := map[string]bool{}
	for _, r := range recs {
		for id := range r.Sources {
			if _, ok := s.sides[id]; !ok {
				want[id] = true
			}
		}
	}
	s.mu.Unlock()
	if len(want) > 0 {
		found, err := findEvents(ctx, filepath.Join(s.dir, store.EventsPath), want)
		if err != nil {
			return err
		}
		s.mu.Lock()
		for id, side := range found {
			s.sides[id] = side
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		f := tui.Fork{Kind: r.Kind, Actor: r.Actor, ForkPoint: r.ForkPoint, DetectedAt: r.DetectedAt}
		ids := make([]string, 0, len(r.Sources))
		for id := range r.Sources {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			side, ok := s.sides[id]
			if !ok {
				side = tui.ForkSide{EventID: id}
				if h := heldByID(evidence, id); h != nil {
					side = sideFromLine(h.Line)
					side.Where = "held as fork evidence"
				}
			}
			side.Source = r.Sources[id]
			f.Sides = append(f.Sides, side)
		}
		if r.Kind == bplog.ForkSameID {
			// The log holds one content of the id; the others were held.
			for _, h := range evidence {
				if h.EventID == r.ForkPoint {
					side := sideFromLine(h.Line)
					side.Where, side.Source = "held as fork evidence", h.Source
					f.Sides = append(f.Sides, side)
				}
			}
		}
		d.Forks = append(d.Forks, f)
	}
	return nil
}

func heldByID(hs []store.HeldEvent, id string) *store.HeldEvent {
	for i := range hs {
		if hs[i].EventID == id {
			return &hs[i]
		}
	}
	return nil
}

func loadKeys(b *store.Backpack, d *tui.Detail) error {
	waiting, err := b.UntrustedWaiting()
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(waiting))
	for id := range waiting {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := tui.UntrustedKey{KeyID: id, Fingerprint: store.Fingerprint(id), Waiting: waiting[id]}
		if store.IsKeyID(id) {
			if seen, err := b.SeenKey(id); err == nil {
				k.Seen, k.Sources, k.FirstSeen, k.LastSeen = true, seen.Sources, seen.FirstSeen, seen.LastSeen
			}
		}
		d.Keys = append(d.Keys, k)
	}
	return nil
}

// manifestStatus checks manifest.sig against the current Merkle root.
func manifestStatus(dir string, reg *bplog.Registry, root string) (state, by string) {
	data, err := os.ReadFile(filepath.Join(dir, store.ManifestSigPath))
	if errors.Is(err, os.ErrNotExist) {
		return "absent", ""
	}
	if err != nil || len(data) > 1<<20 {
		return "unreadable", ""
	}
	rec, err := merkle.ParseManifestSig(data)
	if err != nil {
		return "unreadable", ""
	}
	pub, kerr := reg.Resolve(rec.KeyID)
	if kerr != nil && !errors.Is(kerr, bplog.ErrRevokedKey) {
		return "unknown key", rec.KeyID
	}
	err = merkle.VerifyManifestSig(rec, pub, root)
	switch {
	case errors.Is(err, merkle.ErrStaleRoot):
		return "stale", rec.KeyID
	case err != nil:
		return "invalid", rec.KeyID
	case kerr != nil:
		return "revoked key", rec.KeyID
	}
	return "ok", rec.KeyID
}

// readRejected lists the bundles kept in the quarantine as refused, from
// their .err notes.
func readRejected(dir string) []tui.RejectedFile {
	names, _ := filepath.Glob(filepath.Join(dir, "bundle-*.err"))
	sort.Strings(names)
	var out []tui.RejectedFile
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, maxErrFile+1))
		f.Close()
		if err != nil {
			continue
		}
		if r, ok := parseRejected(data); ok {
			out = append(out, r)
		}
	}
	return out
}

// parseRejected reads a rejected bundle's note {"file", "reason",
// "held_at_utc"}.
func parseRejected(data []byte) (tui.RejectedFile, bool) {
	if len(data) > maxErrFile {
		return tui.RejectedFile{}, false
	}
	var v struct {
		File   string `json:"file"`
		Reason string `json:"reason"`
		At     string `json:"held_at_utc"`
	}
	if json.Unmarshal(data, &v) != nil || v.Reason == "" {
		return tui.RejectedFile{}, false
	}
	return tui.RejectedFile{File: v.File, Reason: v.Reason, At: v.At}, true
}

// findEvents scans the log at path for the events whose ids are in want
// and returns them as fork sides. Lines are matched by a quick look at
// their event_id and parsed only when they match.
func findEvents(ctx context.Context, path string, want map[string]bool) (map[string]tui.ForkSide, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]tui.ForkSide{}
	r := bplog.NewReader(f)
	for n := 0; r.Next(); n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		l := r.Line()
		if l.Err != nil {
			continue
		}
		id, sure := quickID(l.Text)
		if sure && !want[id] {
			continue
		}
		e, err := bplog.Parse(l.Text)
		if err != nil || !want[e.ID] {
			continue
		}
		if _, dup := out[e.ID]; dup {
			continue // the first line carrying the id is the log's copy
		}
		side := sideFromEvent(e, string(l.Text))
		side.Where = fmt.Sprintf("log line %d", l.Number)
		out[e.ID] = side
		if len(out) == len(want) {
			break
		}
	}
	return out, r.Err()
}

// quickID returns the event_id of an event line without parsing it; sure
// is false when the line must be parsed to tell (no event_id member, or
// more than one "event_id" text, or an escape in the value).
func quickID(line []byte) (id string, sure bool) {
	const key = `"event_id"`
	i := bytes.Index(line, []byte(key))
	if i < 0 || bytes.Count(line, []byte(key)) != 1 {
		return "", false
	}
	rest := bytes.TrimLeft(line[i+len(key):], " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return "", false
	}
	rest = bytes.TrimLeft(rest[1:], " \t")
	if len(rest) == 0 || rest[0] != '"' {
		return "", false
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 || bytes.IndexByte(rest[1:1+end], '\\') >= 0 {
		return "", false
	}
	return string(rest[1 : 1+end]), true
}

func sideFromLine(line string) tui.ForkSide {
	e, err := bplog.Parse([]byte(line))
	if err != nil {
		return tui.ForkSide{Summary: "unreadable: " + err.Error(), Line: line}
	}
	return sideFromEvent(e, line)
}

func sideFromEvent(e *bplog.Event, line string) tui.ForkSide {
	return tui.ForkSide{EventID: e.ID, Type: e.Type, Timestamp: e.Timestamp, Summary: summarize(e.Value.Field("payload")), Line: line}
}

// recentEvents reads the newest events from the end of the log at path.
func recentEvents(path string) ([]tui.EventRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	start := max(fi.Size()-tailBytes, 0)
	data := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(data, start); err != nil && err != io.EOF {
		return nil, err
	}
	first := 1
	if start > 0 {
		// Lines before the tail: count them to number the tail's lines.
		n, err := countLines(io.NewSectionReader(f, 0, start))
		if err != nil {
			return nil, err
		}
		first = n + 1
	}
	return parseTail(data, start > 0, first), nil
}

// countLines counts the line breaks in r.
func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 256<<10)
	n := 0
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// parseTail turns the end of a log into event rows, at most maxRecent,
// oldest first. cut says data starts inside the log, so that its first
// (maybe partial) line is skipped; firstLine is the number of the line
// data starts with.
func parseTail(data []byte, cut bool, firstLine int) []tui.EventRow {
	if cut {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil
		}
		data = data[i+1:]
		firstLine++
	}
	var rows []tui.EventRow
	r := bplog.NewReader(bytes.NewReader(data))
	for r.Next() {
		l := r.Line()
		row := tui.EventRow{Line: firstLine + l.Number - 1}
		if l.Err != nil {
			row.Summary = "unusable line: " + l.Err.Error()
		} else if e, err := bplog.Parse(l.Text); err != nil {
			row.Summary = "unusable line: " + err.Error()
			row.Raw = clip(string(l.Text), 4096)
		} else {
			row.EventID, row.Type, row.Actor, row.Timestamp = e.ID, e.Type, e.Actor, e.Timestamp
			row.Namespace = e.Value.Field("namespace").Str()
			row.Summary = summarize(e.Value.Field("payload"))
			row.Raw = string(l.Text)
		}
		rows = append(rows, row)
		if len(rows) > 2*maxRecent {
			rows = append(rows[:0], rows[len(rows)-maxRecent:]...)
		}
	}
	if len(rows) > maxRecent {
		rows = rows[len(rows)-maxRecent:]
	}
	return rows
}

// summarize is a payload in one short line: "subject:predicate = value
// (conf c)" for beliefs, else its JSON.
func summarize(p canon.Value) string {
	var s string
	sub, pred := p.Field("subject"), p.Field("predicate")
	if sub.Kind() == canon.String || pred.Kind() == canon.String {
		s = sub.Str() + ":" + pred.Str()
		if v, ok := p.Get("value"); ok {
			s += " = " + encode(v)
		}
		if c, ok := p.Get("confidence"); ok {
			s += " (conf " + encode(c) + ")"
		}
	} else if p.Kind() != canon.Null {
		s = encode(p)
	}
	return clip(s, 200)
}

func encode(v canon.Value) string {
	b, err := canon.Encode(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !startsRune(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func startsRune(b byte) bool { return b&0xC0 != 0x80 }

// stateOrder is the order namespaces appear in the state view: what needs
// a decision first.
var stateOrder = []reducer.Namespace{reducer.Contested, reducer.Canonical, reducer.Local, reducer.Archived}

// loadState copies the reducer state into rows, at most maxStateRows.
func loadState(b *store.Backpack, d *tui.Detail) error {
	return b.WithState(func(st *reducer.State) error {
		if err := st.Err(); err != nil {
			d.ReducerFailed = err.Error()
		}
		d.Contested = st.Len(reducer.Contested)
		for _, ns := range stateOrder {
			d.StateTotal += st.Len(ns)
		}
		for _, ns := range stateOrder {
			for key, v := range st.Entries(ns) {
				if len(d.State) >= maxStateRows {
					return nil
				}
				d.State = append(d.State, stateRow(ns, key, v))
			}
		}
		return nil
	})
}

func stateRow(ns reducer.Namespace, key string, v canon.Value) tui.StateRow {
	row := tui.StateRow{Namespace: ns.String(), Key: key, Raw: clip(encode(v), 64<<10)}
	switch ns {
	case reducer.Contested:
		for _, m := range v.Field("evidence_by_value").Members() {
			row.Competing = append(row.Competing, evidenceLine(m.Key, m.Value))
		}
		row.Summary = fmt.Sprintf("%d values: %s", len(row.Competing), strings.Join(valuesOf(v), " | "))
	case reducer.Archived:
		row.Summary = fmt.Sprintf("%d archived entries", v.Len())
	default:
		row.Summary = encode(v.Field("value"))
		if a := v.Field("actor"); a.Kind() == canon.String {
			row.Summary += " by " + a.Str()
		}
		if c, ok := v.Get("confidence"); ok {
			row.Summary += " (conf " + encode(c) + ")"
		}
	}
	row.Summary = clip(row.Summary, 200)
	return row
}

func valuesOf(contested canon.Value) []string {
	var out []string
	for _, m := range contested.Field("evidence_by_value").Members() {
		out = append(out, clip(m.Key, 40))
	}
	return out
}

// evidenceLine is one competing value of a contested belief with who
// backs it.
func evidenceLine(value string, recs canon.Value) string {
	var who []string
	seen := map[string]bool{}
	for _, r := range recs.Elems() {
		a := r.Field("actor").Str()
		if a != "" && !seen[a] {
			seen[a] = true
			who = append(who, a)
		}
	}
	s := fmt.Sprintf("%s: %d evidence", clip(value, 60), recs.Len())
	if len(who) > 0 {
		s += " from " + strings.Join(who, ", ")
	}
	return s
}
