package store_test

import (
	"bytes"
	"testing"

	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// FuzzParseCheckpoint: the checkpoint parser never panics, and Restore of
// whatever it accepts fails cleanly or yields a state that hashes.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(`{"event_count":1,"key_id":"bp1_x","last_event_id":"evt_1","merkle_root":null,"signed_at_utc":"t","spec_version":"1.0","state":{"archived":{},"canonical":{},"contested":{},"local":{},"metadata_partial":{"current_epoch":null,"event_count":1,"last_event_id":"evt_1","reducer":{"conflict_confidence_threshold":0.5,"name":"SovereignReducerV0","version":"0.2.0"}}},"sig":"AA=="}`))
	f.Add([]byte(`{"event_count":0,"state":{},"backpack_resume":{"log_offset":0,"evidence":{},"heads":{"a":{"head":"e","events":1}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := store.ParseCheckpoint("x.chk", data)
		if err != nil {
			return
		}
		cp.StateHash()
		if st, err := cp.Restore(); err == nil {
			st.StateHash()
		}
	})
}

// FuzzPrepareLog: PrepareLog finds exactly the lines the log reader
// reads, as slices of the data it was given, and fails exactly when the
// reader meets an unusable line.
func FuzzPrepareLog(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n\n  {\"b\":2} \r\n{\"c\":3}"))
	f.Add([]byte("\xef\xbb\xbf{\"a\":1}\r{\"b\":\"\x85\"}\x0b\x0c\x1c\n"))
	f.Add([]byte("\xff\xfe\n\t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want [][]byte
		var wantErr bool
		rd := bplog.NewReader(bytes.NewReader(data))
		for rd.Next() {
			l := rd.Line()
			if l.Err != nil {
				wantErr = true
				break
			}
			want = append(want, bytes.Clone(l.Text))
		}
		if rd.Err() != nil {
			wantErr = true
		}
		p, err := store.PrepareLog(data)
		if (err != nil) != wantErr {
			t.Fatalf("PrepareLog error %v, reader error %v", err, wantErr)
		}
		if err != nil {
			return
		}
		got := store.PreparedLines(p)
		if len(got) != len(want) {
			t.Fatalf("%d lines, the reader read %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: %q, the reader read %q", i, got[i], want[i])
			}
		}
	})
}
