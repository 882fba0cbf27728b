package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/scan"
)

type logRow struct {
	Line      int    `json:"line"`
	EventID   string `json:"event_id"`
	Type      string `json:"type"`
	Actor     string `json:"actor"`
	Timestamp string `json:"timestamp_utc"`
	Summary   string `json:"summary"`
	Problem   string `json:"problem,omitempty"`
	From      string `json:"brought_by,omitempty"`
	Detected  string `json:"fork_detected_at_utc,omitempty"`
}

func runLog(e *env, args []string) error {
	fs := newFlags(e, "log", "DIR [flags]", `List the events of DIR's log in file order, with their line numbers.
Lines that are not usable events are listed with the reason.`)
	actor := fs.String("actor", "", "only this actor")
	typ := fs.String("type", "", "only this event type")
	limit := fs.Int("n", 0, "only the last N events (0: all)")
	asJSON := fs.Bool("json", false, "print JSON lines, one per event")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	f, err := openLog(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var rows []logRow
	err = scan.Run(e.ctx, f, scan.Options{}, func(it *scan.Item) error {
		r := logRow{Line: it.Number}
		switch {
		case it.Err != nil:
			r.Problem = it.Err.Error()
		case it.Event == nil:
			r.Problem = "not an object"
		default:
			ev := it.Event
			r.EventID, r.Type, r.Actor, r.Timestamp = ev.ID, ev.Type, ev.Actor, ev.Timestamp
			r.Summary = summarize(ev.Value.Field("payload"))
			if it.EventErr != nil {
				r.Problem = it.EventErr.Error()
			}
		}
		if (*actor != "" && r.Actor != *actor) || (*typ != "" && r.Type != *typ) {
			return nil
		}
		rows = append(rows, r)
		if *limit > 0 && len(rows) > 2*(*limit)+1024 {
			rows = append(rows[:0], rows[len(rows)-*limit:]...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *limit > 0 && len(rows) > *limit {
		rows = rows[len(rows)-*limit:]
	}
	for _, r := range rows {
		if *asJSON {
			if err := writeJSONLine(e, r); err != nil {
				return err
			}
			continue
		}
		if r.Problem != "" && r.EventID == "" {
			fmt.Fprintf(e.stdout, "%6d  UNUSABLE LINE: %s\n", r.Line, r.Problem)
			continue
		}
		fmt.Fprintf(e.stdout, "%6d  %s  %-32s %-12s %-18s %s\n", r.Line, r.EventID, r.Timestamp, r.Type, r.Actor, r.Summary)
	}
	return nil
}

func writeJSONLine(e *env, v any) error {
	b, err := jsonMarshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, string(b))
	return err
}

// summarize renders a payload in one short line: subject:predicate = value.
func summarize(p canon.Value) string {
	s := ""
	if sub, pred := p.Field("subject"), p.Field("predicate"); sub.Kind() == canon.String || pred.Kind() == canon.String {
		s = sub.Str() + ":" + pred.Str()
		if v, ok := p.Get("value"); ok {
			t, _ := canon.Encode(v)
			s += " = " + string(t)
		}
		if c, ok := p.Get("confidence"); ok {
			t, _ := canon.Encode(c)
			s += " (conf " + string(t) + ")"
		}
	} else {
		t, _ := canon.Encode(p)
		s = string(t)
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
