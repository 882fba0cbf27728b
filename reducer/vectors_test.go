package reducer_test

import (
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/reducer"
)

// checkState compares a state with the reference's outputs.
func checkState(t *testing.T, s *reducer.State, wantHash, wantJSON, wantPreimage string) {
	t.Helper()
	if got := mustHash(t, s); got != wantHash {
		t.Errorf("state hash %s, want %s", got, wantHash)
	}
	if wantJSON != "" {
		got, err := s.ExportJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != wantJSON {
			t.Errorf("state JSON\n got %s\nwant %s", got, wantJSON)
		}
	}
	if wantPreimage != "" {
		got, err := s.HashPreimage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != wantPreimage {
			t.Errorf("hash preimage\n got %s\nwant %s", got, wantPreimage)
		}
		v, err := s.PreimageValue()
		if err != nil {
			t.Fatal(err)
		}
		if enc, err := canon.Encode(v); err != nil || string(enc) != wantPreimage {
			t.Errorf("PreimageValue encodes to %s (%v), want %s", enc, err, wantPreimage)
		}
	}
}

func TestExtraVectorsReducer(t *testing.T) {
	doc := mustParse(t, string(conformance.ReadFile(t, "extra_vectors.json")))
	scenarios := doc.Field("reducer").Elems()
	if len(scenarios) != 14 {
		t.Fatalf("%d reducer scenarios, want 14", len(scenarios))
	}
	for _, sc := range scenarios {
		t.Run(sc.Field("id").Str(), func(t *testing.T) {
			events := readLog(sc.Field("events_ndjson").Str())
			s := replay(t, events)
			checkState(t, s, sc.Field("expected_state_hash").Str(),
				sc.Field("expected_state_json").Str(), sc.Field("expected_hash_preimage").Str())
		})
	}
}

func TestVectorsDeterminism(t *testing.T) {
	doc := mustParse(t, string(conformance.ReadFile(t, "vectors.json")))
	found := false
	for _, v := range doc.Field("vectors").Elems() {
		if v.Field("id").Str() != "reducer_determinism_01" {
			continue
		}
		found = true
		s := replay(t, v.Field("input").Elems())
		if got, want := mustHash(t, s), v.Field("expected").Str(); got != want {
			t.Errorf("state hash %s, want %s", got, want)
		}
	}
	if !found {
		t.Fatal("reducer_determinism_01 not found")
	}
}

func TestExpectedBackpacks(t *testing.T) {
	expected := mustParse(t, string(conformance.ReadFile(t, "expected.json")))
	for _, name := range []string{"reference_backpack", "demo_backpack"} {
		t.Run(name, func(t *testing.T) {
			exp := expected.Field(name)
			log := string(conformance.ReadFile(t, name, "events", "events.ndjson"))
			s := replay(t, readLog(log))
			checkState(t, s, exp.Field("reducer_v0_state_hash").Str(), exp.Field("reducer_v0_state_json").Str(), "")
			if got, want := s.EventCount(), exp.Field("event_count"); !canon.PyEqual(canon.IntValue(got), want) {
				t.Errorf("event count %d, want %v", got, want)
			}
		})
	}
	// The merged log of a sync, in the reference's merge order.
	for _, dir := range []string{
		"sync_backpacks(local=reference_backpack, remote=demo_backpack)",
		"sync_backpacks(local=demo_backpack, remote=reference_backpack)",
	} {
		t.Run(dir, func(t *testing.T) {
			exp := expected.Field(dir)
			byID := map[string]canon.Value{}
			for _, name := range []string{"reference_backpack", "demo_backpack"} {
				for _, ev := range readLog(string(conformance.ReadFile(t, name, "events", "events.ndjson"))) {
					byID[ev.Field("event_id").Str()] = ev
				}
			}
			var merged []canon.Value
			for _, id := range exp.Field("merged_event_ids_in_order").Elems() {
				merged = append(merged, byID[id.Str()])
			}
			s := replay(t, merged)
			if got, want := mustHash(t, s), exp.Field("new_state_hash").Str(); got != want {
				t.Errorf("state hash %s, want %s", got, want)
			}
		})
	}
}

func TestSyncMergeState(t *testing.T) {
	doc := mustParse(t, string(conformance.ReadFile(t, "extra_vectors.json")))
	sm := doc.Field("sync_merge")
	s := replay(t, readLog(sm.Field("merged_ndjson").Str()))
	checkState(t, s, sm.Field("state_hash_after_full_replay").Str(), sm.Field("state_json_after_full_replay").Str(), "")

	// The checkpoint vector embeds the same state's preimage.
	cp := mustParse(t, doc.Field("checkpoint").Field("file_text").Str())
	want, err := canon.Encode(cp.Field("state"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.HashPreimage()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("preimage\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(string(got), `"event_count":5`) {
		t.Errorf("unexpected preimage %s", got)
	}
}
