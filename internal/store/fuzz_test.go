package store_test

import (
	"testing"

	"github.com/backpack-field/backpack/internal/store"
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
