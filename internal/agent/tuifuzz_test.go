package agent

import (
	"bytes"
	"encoding/json"
	"testing"

	bplog "github.com/backpack-field/backpack/log"
)

// FuzzParseStatus: a status line from the socket never panics, and what
// is accepted encodes and decodes to the same status.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"backpack":{"uid":"u","events":7},"held":{"forks":2,"needs":["actor a: need events after evt_1 (2 events waiting)"]},"verdict":"v"}`))
	f.Add([]byte(`{"error":"bad request"}`))
	f.Add([]byte(`{"peers":[{"key_id":"bp1_0011223344556677","we_lack":-1}],"agent":{"started_at":"2026-03-14T12:00:00Z"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		st, err := parseStatus(line)
		if err != nil {
			return
		}
		data, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("accepted status does not encode: %v", err)
		}
		again, err := parseStatus(data)
		if err != nil {
			t.Fatalf("re-encoded status refused: %v", err)
		}
		data2, _ := json.Marshal(again)
		if !bytes.Equal(data, data2) {
			t.Fatalf("status changed on a round trip:\n%s\n%s", data, data2)
		}
	})
}

// FuzzParseTail: any bytes at the end of a log give at most maxRecent
// rows, numbered in order, and an event row's id is the parsed one.
func FuzzParseTail(f *testing.F) {
	f.Add([]byte("{\"event_id\":\"evt_1\",\"type\":\"OBSERVATION\",\"actor\":\"a\",\"payload\":{\"subject\":\"s\",\"predicate\":\"p\",\"value\":1}}\n"), false, 1)
	f.Add([]byte("partial line\n{\"event_id\":\"evt_2\"}\r\n\n[1]\r{}"), true, 40)
	f.Add([]byte("\xff\xfe\n"), false, 1)
	f.Fuzz(func(t *testing.T, data []byte, cut bool, first int) {
		if first < 1 || first > 1<<30 {
			first = 1
		}
		rows := parseTail(data, cut, first)
		if len(rows) > maxRecent {
			t.Fatalf("%d rows", len(rows))
		}
		for i, r := range rows {
			if i > 0 && r.Line <= rows[i-1].Line {
				t.Fatalf("rows out of order: %d after %d", r.Line, rows[i-1].Line)
			}
			if r.EventID != "" {
				e, err := bplog.Parse([]byte(r.Raw))
				if err != nil || e.ID != r.EventID {
					t.Fatalf("row %d: id %q but the line parses to %v %v", i, r.EventID, e, err)
				}
			}
		}
	})
}

// FuzzQuickID: when quickID is sure, a line that parses as an event has
// that event_id.
func FuzzQuickID(f *testing.F) {
	f.Add([]byte(`{"actor":"a","event_id":"evt_1","payload":{}}`))
	f.Add([]byte(`{"payload":{"event_id":"evt_x"},"event_id":"evt_3"}`))
	f.Add([]byte(`{"event_id" : "evt_\u0031"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		id, sure := quickID(line)
		if !sure {
			return
		}
		if e, err := bplog.Parse(line); err == nil && e.ID != id {
			t.Fatalf("quickID %q, parsed %q", id, e.ID)
		}
	})
}

// FuzzParseRejected: a rejected bundle's note never panics and is
// bounded.
func FuzzParseRejected(f *testing.F) {
	f.Add([]byte(`{"file":"/p/b.bundle","reason":"bundles: corrupt frame header","held_at_utc":"2026-03-14T10:00:00+00:00"}`))
	f.Add([]byte(`{"reason":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, ok := parseRejected(data)
		if ok && (r.Reason == "" || len(data) > maxErrFile) {
			t.Fatalf("accepted %+v from %d bytes", r, len(data))
		}
	})
}
