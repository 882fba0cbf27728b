package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

func runAppend(e *env, args []string) error {
	fs := newFlags(e, "append", "DIR --type T --subject S --predicate P --value JSON [flags]\n       backpack append DIR --event FILE|-", `Sign events with the device key and append them to DIR's log; the
reducer state, manifest, Merkle root and manifest.sig are updated at once.

With --type and friends one event is built: payload {subject, predicate,
value[, confidence]}. --value is JSON ("open", 12, true, {"k":1}); a bare
word that is not JSON is taken as a string.

With --event, each line of FILE (or stdin for "-") is an event object
without event_id/sig, e.g. {"type":"OBSERVATION","payload":{...}}; actor,
prev_event_hash and timestamp_utc are filled in when absent. All lines are
appended in one write.`)
	typ := fs.String("type", "", "event type: OBSERVATION, ASSERTION, ATTESTATION, RETRACTION, or any extension type")
	subject := fs.String("subject", "", "payload subject")
	predicate := fs.String("predicate", "", "payload predicate")
	value := fs.String("value", "", "payload value as JSON")
	confidence := fs.Float64("confidence", -1, "payload confidence (0..1); omitted when not given")
	namespace := fs.String("namespace", "", "event namespace (canonical, local, ...); omitted when not given")
	actor := fs.String("actor", "", "actor label (default: the device's)")
	eventFile := fs.String("event", "", "read event objects, one per line, from FILE or - for stdin")
	key := fs.String("key", "", "device key file (default: found from the backpack's uid)")
	asJSON := fs.Bool("json", false, "print the appended events as JSON")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	var bodies []canon.Value
	switch {
	case *eventFile != "" && *typ != "":
		return usagef("use either --event or --type, not both")
	case *eventFile != "":
		bodies, err = readBodies(e, *eventFile)
		if err != nil {
			return err
		}
	case *typ != "":
		body, err := buildBody(*typ, *subject, *predicate, *value, *confidence, *namespace)
		if err != nil {
			return err
		}
		bodies = []canon.Value{body}
	default:
		fs.usage(false)
		return usagef("need --type (with --subject, --predicate, --value) or --event")
	}
	if *actor != "" {
		for i := range bodies {
			if !bodies[i].Has("actor") {
				bodies[i] = bodies[i].With("actor", canon.StringValue(*actor))
			}
		}
	}
	b, err := openWriter(e, dir, *key)
	if err != nil {
		return err
	}
	evs, err := b.AppendBatch(bodies)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	snap := b.Snapshot()
	sh, err := b.StateHash()
	if err != nil {
		return err
	}
	if *asJSON {
		var out []any
		for _, ev := range evs {
			out = append(out, map[string]any{"event_id": ev.ID, "type": ev.Type, "actor": ev.Actor, "prev_event_hash": ev.Prev})
		}
		return writeJSON(e.stdout, map[string]any{"appended": out, "state_hash": sh, "merkle_root": snap.MerkleRoot})
	}
	for _, ev := range evs {
		fmt.Fprintf(e.stdout, "appended %s  %s by %s\n", ev.ID, ev.Type, ev.Actor)
	}
	fmt.Fprintf(e.stdout, "state %s  merkle root %s\n", shortID(sh), shortID(snap.MerkleRoot))
	return nil
}

func buildBody(typ, subject, predicate, value string, confidence float64, namespace string) (canon.Value, error) {
	var payload canon.ObjectBuilder
	if subject != "" {
		payload.Set("subject", canon.StringValue(subject))
	}
	if predicate != "" {
		payload.Set("predicate", canon.StringValue(predicate))
	}
	if value != "" {
		v, err := canon.Parse([]byte(value))
		if err != nil {
			if strings.ContainsAny(value, `{}[]"`) {
				return canon.Value{}, usagef("--value is not valid JSON: %v", err)
			}
			v = canon.StringValue(value)
		}
		payload.Set("value", v)
	}
	if confidence >= 0 {
		payload.Set("confidence", canon.FloatValue(confidence))
	}
	switch typ {
	case "OBSERVATION", "ASSERTION", "ATTESTATION", "RETRACTION":
		if subject == "" || predicate == "" {
			return canon.Value{}, usagef("%s needs --subject and --predicate", typ)
		}
		if typ != "RETRACTION" && value == "" {
			return canon.Value{}, usagef("%s needs --value", typ)
		}
	}
	var body canon.ObjectBuilder
	body.Set("type", canon.StringValue(typ)).Set("payload", payload.Value())
	if namespace != "" {
		body.Set("namespace", canon.StringValue(namespace))
	}
	return body.Value(), nil
}

// maxEventInput bounds --event input.
const maxEventInput = 256 << 20

func readBodies(e *env, name string) ([]canon.Value, error) {
	var r io.Reader = e.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	rd := bplog.NewReader(io.LimitReader(r, maxEventInput))
	var out []canon.Value
	for rd.Next() {
		l := rd.Line()
		if l.Err != nil {
			return nil, fmt.Errorf("event input line %d: %w", l.Number, l.Err)
		}
		v, err := bplog.ParseLine(l.Text)
		if err != nil {
			return nil, fmt.Errorf("event input line %d: %w", l.Number, err)
		}
		if v.Kind() != canon.Object {
			return nil, fmt.Errorf("event input line %d: not a JSON object", l.Number)
		}
		if v.Has("sig") || v.Has("event_id") {
			return nil, fmt.Errorf("event input line %d: already has event_id/sig; backpack signs events itself (bring signed events in with a bundle import)", l.Number)
		}
		if _, err := canon.Encode(v); err != nil {
			return nil, fmt.Errorf("event input line %d: %w", l.Number, err)
		}
		out = append(out, v)
	}
	if rd.Err() != nil {
		return nil, rd.Err()
	}
	if len(out) == 0 {
		return nil, errors.New("no events in input")
	}
	return out, nil
}
