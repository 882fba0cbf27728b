package cli

import (
	"encoding/json"
	"fmt"

	"github.com/backpack-field/backpack/internal/scan"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func runForks(e *env, args []string) error {
	fs := newFlags(e, "forks", "DIR [flags]", `List forks in DIR's log: an actor with two different events after the same
predecessor (or two first events), or one event_id carried by two
different contents. Both sides are kept in the log as evidence; each is
shown with its line, type, time and payload. Exit status is 0 either way
unless --check is given, which exits 1 when there is any fork.`)
	asJSON := fs.Bool("json", false, "print JSON")
	checkFlag := fs.Bool("check", false, "exit 1 when there is a fork")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	f, err := openLog(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	chains := bplog.NewChains()
	details := map[int]logRow{}
	err = scan.Run(e.ctx, f, scan.Options{Hashes: true}, func(it *scan.Item) error {
		if it.Event != nil && it.EventErr == nil && it.EncodeErr == nil {
			chains.Add(it.Event, it.Number, it.Hash)
			ev := it.Event
			details[it.Number] = logRow{Line: it.Number, EventID: ev.ID, Type: ev.Type, Actor: ev.Actor, Timestamp: ev.Timestamp, Summary: summarize(ev.Value.Field("payload"))}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep := chains.Finish()
	// Where each side came from, when this device recorded it on import.
	from := map[string]string{}
	detected := map[string]string{}
	if recs, err := store.ReadForkRecords(dir); err == nil {
		for _, r := range recs {
			for id, src := range r.Sources {
				from[id] = src
				detected[id] = r.DetectedAt
			}
		}
	}
	type forkOut struct {
		bplog.Fork
		Sides []logRow `json:"sides"`
	}
	var out []forkOut
	for _, fk := range rep.Forks {
		fo := forkOut{Fork: fk}
		for _, ev := range fk.Events {
			side := details[ev.Line]
			side.From, side.Detected = from[ev.EventID], detected[ev.EventID]
			fo.Sides = append(fo.Sides, side)
		}
		out = append(out, fo)
	}
	if *asJSON {
		if out == nil {
			out = []forkOut{}
		}
		if err := writeJSON(e.stdout, map[string]any{"forks": out}); err != nil {
			return err
		}
	} else if len(out) == 0 {
		fmt.Fprintln(e.stdout, "no forks")
	} else {
		for _, fo := range out {
			fmt.Fprintf(e.stdout, "FORK %s\n", fo.Fork.String())
			for _, s := range fo.Sides {
				fmt.Fprintf(e.stdout, "  line %-6d %s  %-32s %-12s %s\n", s.Line, s.EventID, s.Timestamp, s.Type, s.Summary)
				if s.From != "" {
					fmt.Fprintf(e.stdout, "              from %s; fork detected %s\n", s.From, s.Detected)
				}
			}
		}
	}
	if *checkFlag && len(out) > 0 {
		return errFailed
	}
	return nil
}
