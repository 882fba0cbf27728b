package reducer_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/reducer"
)

func encodeText(tb testing.TB, v canon.Value) string {
	tb.Helper()
	b, err := canon.Encode(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

const accessorLog = `{"type":"OBSERVATION","event_id":"e1","actor":"a","payload":{"subject":"door","predicate":"state","value":"open","confidence":0.9}}
{"type":"OBSERVATION","event_id":"e2","actor":"b","payload":{"subject":"door","predicate":"state","value":"closed","confidence":0.9}}
{"type":"ASSERTION","event_id":"e3","actor":"a","payload":{"subject":"light","predicate":"on","value":true}}
{"type":"ATTESTATION","event_id":"e4","actor":"auth","payload":{"subject":"lock","predicate":"set","value":1}}
{"type":"ATTESTATION","event_id":"e5","actor":"auth","payload":{"subject":"lock","predicate":"set","value":2}}
{"type":"REDUCER_EPOCH","event_id":"e6","payload":{"epoch_id":"ep1"}}
[1,2]
{"type":"GENESIS","id":{"n":1}}`

func TestAccessors(t *testing.T) {
	s := replay(t, readLog(accessorLog))
	if got := s.EventCount(); got != 7 {
		t.Errorf("EventCount = %d, want 7", got)
	}
	if got := encodeText(t, s.LastEventID()); got != `{"n":1}` {
		t.Errorf("LastEventID = %s", got)
	}
	if got := encodeText(t, s.CurrentEpoch()); got != `{"effective_from_event_id":"e6","epoch_id":"ep1","ontology_versions":null,"reducer_hash":null}` {
		t.Errorf("CurrentEpoch = %s", got)
	}
	lens := map[reducer.Namespace]int{reducer.Archived: 1, reducer.Canonical: 1, reducer.Contested: 1, reducer.Local: 1}
	for ns, want := range lens {
		if got := s.Len(ns); got != want {
			t.Errorf("Len(%s) = %d, want %d", ns, got, want)
		}
	}
	if got := s.Keys(reducer.Local); !slices.Equal(got, []string{"light:on"}) {
		t.Errorf("Keys(local) = %v", got)
	}
	want := map[reducer.Namespace]string{
		reducer.Local:     `{"actor":"a","confidence":0.35,"evidence_count":1,"provenance":"e3","timestamp":null,"value":true}`,
		reducer.Canonical: `{"attestation_event_id":"e5","attested_by":"auth","provenance":"e5","value":2}`,
		reducer.Archived:  `[{"attestation_event_id":"e4","attested_by":"auth","provenance":"e4","superseded_by":"e5","value":1}]`,
		reducer.Contested: `{"canonical_value":null,"evidence_by_value":{"\"closed\"":[{"actor":"b","confidence":0.9,"event_id":"e2","namespace":"local","timestamp_utc":null,"value":"closed"}],"\"open\"":[{"actor":"a","confidence":0.9,"event_id":"e1","namespace":"local","timestamp_utc":null,"value":"open"}]},"reason":"conflicts_with_local","status":"AWAITING_RESOLUTION","total_evidence_count":2}`,
	}
	for ns, w := range want {
		n := 0
		for key, v := range s.Entries(ns) {
			n++
			if got := encodeText(t, v); got != w {
				t.Errorf("Entries(%s)[%s] = %s, want %s", ns, key, got, w)
			}
			e, ok := s.Entry(ns, key)
			if !ok || !canon.Equal(e, v) {
				t.Errorf("Entry(%s, %s) disagrees with Entries", ns, key)
			}
		}
		if n != 1 {
			t.Errorf("Entries(%s) yielded %d entries", ns, n)
		}
	}
	if _, ok := s.Entry(reducer.Local, "door:state"); ok {
		t.Error("contested key still local")
	}
	ev := encodeText(t, s.Evidence())
	if want := `{"door:state":[{"actor":"a","confidence":0.9,"event_id":"e1","namespace":"local","timestamp_utc":null,"value":"open"},{"actor":"b","confidence":0.9,"event_id":"e2","namespace":"local","timestamp_utc":null,"value":"closed"}],"light:on":[{"actor":"a","confidence":0.35,"event_id":"e3","namespace":"local","timestamp_utc":null,"value":true}]}`; ev != want {
		t.Errorf("Evidence = %s", ev)
	}
}

func TestApplyError(t *testing.T) {
	for _, line := range []string{
		`{"type":"OBSERVATION","payload":"x"}`,
		`{"type":"REDUCER_EPOCH","payload":[1]}`,
		`{"type":"OBSERVATION","payload":{"subject":"s","predicate":"p","confidence":1` + strings.Repeat("0", 400) + `}}`,
	} {
		s := reducer.New()
		s.Apply(mustParse(t, `{"type":"OBSERVATION","event_id":"e1","payload":{"subject":"s","predicate":"p","value":1}}`))
		err := s.Apply(mustParse(t, line))
		var ae *reducer.ApplyError
		if !errors.As(err, &ae) || ae.Count != 1 {
			t.Fatalf("Apply(%s) = %v, want an *ApplyError after 1 event", line, err)
		}
		if s.Err() != err {
			t.Errorf("Err() = %v", s.Err())
		}
		if err2 := s.Apply(mustParse(t, `{"type":"GENESIS"}`)); err2 != err || s.EventCount() != 1 {
			t.Errorf("a stopped state accepted an event: %v, count %d", err2, s.EventCount())
		}
		if _, herr := s.StateHash(); herr != err {
			t.Errorf("StateHash = %v", herr)
		}
		if _, err := s.ExportJSON(); !errors.As(err, &ae) {
			t.Errorf("ExportJSON = %v", err)
		}
	}
	// A contest over a value that cannot be canonicalised raises too.
	s := reducer.New()
	s.Apply(mustParse(t, `{"type":"OBSERVATION","payload":{"subject":"s","predicate":"p","value":NaN,"confidence":0.1}}`))
	err := s.Apply(mustParse(t, `{"type":"OBSERVATION","payload":{"subject":"s","predicate":"p","value":1,"confidence":0.9}}`))
	var ae *reducer.ApplyError
	if !errors.As(err, &ae) {
		t.Errorf("contest over NaN: %v", err)
	}
}

func TestHashErrorIsTransient(t *testing.T) {
	s := reducer.New()
	s.Apply(mustParse(t, `{"type":"OBSERVATION","event_id":"e1","payload":{"subject":"s","predicate":"p","value":1,"confidence":"inf"}}`))
	if _, err := s.StateHash(); !errors.Is(err, canon.ErrNonFinite) {
		t.Fatalf("StateHash = %v, want canon.ErrNonFinite", err)
	}
	if _, err := s.HashPreimage(); !errors.Is(err, canon.ErrNonFinite) {
		t.Fatalf("HashPreimage = %v", err)
	}
	// An attestation clears the local entry that held the infinity.
	s.Apply(mustParse(t, `{"type":"ATTESTATION","event_id":"e2","payload":{"subject":"s","predicate":"p","value":1}}`))
	if _, err := s.StateHash(); err != nil {
		t.Fatalf("after attestation: %v", err)
	}
	// The evidence keeps it, which the binary form preserves.
	bin, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var d reducer.State
	if err := d.UnmarshalBinary(bin); err != nil {
		t.Fatal(err)
	}
	if got, want := mustHash(t, &d), mustHash(t, s); got != want {
		t.Errorf("decoded hash %s, want %s", got, want)
	}
}

func TestRestoreRejectsMalformed(t *testing.T) {
	s := replay(t, readLog(accessorLog))
	pre, err := s.PreimageValue()
	if err != nil {
		t.Fatal(err)
	}
	ev := s.Evidence()
	if _, err := reducer.Restore(pre, ev); err != nil {
		t.Fatalf("Restore of a good state: %v", err)
	}
	bad := []struct {
		name          string
		pre, evidence canon.Value
	}{
		{"no evidence for a contested key", pre, canon.ObjectValue()},
		{"preimage not an object", canon.ArrayValue(), ev},
		{"missing metadata", pre.Without("metadata_partial"), ev},
		{"wrong reducer block", pre.With("metadata_partial", pre.Field("metadata_partial").With("reducer", canon.ObjectValue())), ev},
		{"local entry with an int confidence", pre.With("local", canon.ObjectValue(canon.Member{Key: "light:on",
			Value: pre.Field("local").Field("light:on").With("confidence", canon.IntValue(1))})), ev},
		{"contested count beyond the evidence", pre.With("contested", canon.ObjectValue(canon.Member{Key: "door:state",
			Value: pre.Field("contested").Field("door:state").With("total_evidence_count", canon.IntValue(3))})), ev},
		{"contested groups that do not match", pre.With("contested", canon.ObjectValue(canon.Member{Key: "door:state",
			Value: pre.Field("contested").Field("door:state").With("evidence_by_value", canon.ObjectValue())})), ev},
		{"evidence record with a bad namespace", pre, ev.With("light:on", canon.ArrayValue(
			ev.Field("light:on").Index(0).With("namespace", canon.StringValue("x"))))},
	}
	for _, tt := range bad {
		if _, err := reducer.Restore(tt.pre, tt.evidence); !errors.Is(err, reducer.ErrMalformed) {
			t.Errorf("%s: Restore = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func TestFromReferenceCheckpoint(t *testing.T) {
	s, err := reducer.FromReferenceCheckpoint(canon.ArrayValue())
	if err != nil || s.EventCount() != 0 || mustHash(t, s) != "6d2d920098d4f30c2a0aa1065e05d75e5a02d4fcd78a5cf5b04e47ad07449823" {
		t.Fatalf("non-object state: %v", err)
	}
	// SPEC §6.10: a resume loses the evidence, so a later observation of
	// a key counts only the new evidence.
	events := readLog(`{"type":"OBSERVATION","event_id":"e1","payload":{"subject":"s","predicate":"p","value":1,"confidence":0.6}}
{"type":"OBSERVATION","event_id":"e2","payload":{"subject":"s","predicate":"p","value":1,"confidence":0.7}}
{"type":"OBSERVATION","event_id":"e3","payload":{"subject":"s","predicate":"p","value":1,"confidence":0.8}}`)
	full := replay(t, events)
	pre, err := replay(t, events[:2]).PreimageValue()
	if err != nil {
		t.Fatal(err)
	}
	lossy, err := reducer.FromReferenceCheckpoint(pre)
	if err != nil {
		t.Fatal(err)
	}
	lossy.Apply(events[2])
	local, _ := lossy.Entry(reducer.Local, "s:p")
	if got := encodeText(t, local.Field("evidence_count")); got != "1" {
		t.Errorf("lossy resume evidence_count %s, want 1", got)
	}
	if mustHash(t, lossy) == mustHash(t, full) {
		t.Error("lossy resume equals full replay")
	}
	// A partial checkpoint: missing maps are empty, the reducer block is
	// replaced, the event count is taken with int().
	cp := mustParse(t, `{"local":{},"metadata_partial":{"event_count":2.7,"last_event_id":"x","reducer":{"name":"other"}}}`)
	s, err = reducer.FromReferenceCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	pv, err := s.PreimageValue()
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeText(t, pv); got != `{"archived":{},"canonical":{},"contested":{},"local":{},"metadata_partial":{"current_epoch":null,"event_count":2,"last_event_id":"x","reducer":{"name":"other"}}}` {
		t.Errorf("partial checkpoint gives %s", got)
	}
}

func TestUnmarshalBinaryRejects(t *testing.T) {
	good, err := replay(t, readLog(accessorLog)).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("XXXX"), good[4:]...),
		"checksum":  append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1),
		"truncated": fixChecksum(good[:len(good)-5]),
		"version":   fixChecksum(append(append([]byte("bpRS"), 2), good[5:]...)),
	}
	for name, data := range bad {
		var s reducer.State
		if err := s.UnmarshalBinary(data); !errors.Is(err, reducer.ErrCorrupt) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrCorrupt", name, err)
		}
	}
}

func TestZeroState(t *testing.T) {
	var z reducer.State
	if got := mustHash(t, &z); got != mustHash(t, reducer.New()) {
		t.Errorf("zero State hash %s", got)
	}
	var a reducer.State
	for _, ev := range readLog(accessorLog) {
		a.Apply(ev)
	}
	if got, want := mustHash(t, &a), mustHash(t, replay(t, readLog(accessorLog))); got != want {
		t.Errorf("zero State after events: %s, want %s", got, want)
	}
}

// Values built by hand may hold strings that are not UTF-8 (the parser
// never returns such); they must fail hashing, not the process.
func TestInvalidUTF8FailsHashing(t *testing.T) {
	bad := canon.StringValue("a\xffb")
	obs := func(subject, value canon.Value, conf float64) canon.Value {
		return canon.ObjectValue(
			canon.Member{Key: "type", Value: canon.StringValue("OBSERVATION")},
			canon.Member{Key: "payload", Value: canon.ObjectValue(
				canon.Member{Key: "subject", Value: subject},
				canon.Member{Key: "predicate", Value: canon.StringValue("p")},
				canon.Member{Key: "value", Value: value},
				canon.Member{Key: "confidence", Value: canon.FloatValue(conf)},
			)},
		)
	}
	s := reducer.New()
	if err := s.Apply(obs(bad, canon.IntValue(1), 0.9)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StateHash(); !errors.Is(err, canon.ErrInvalidStr) {
		t.Errorf("bad key: StateHash = %v", err)
	}
	s = reducer.New()
	s.Apply(obs(canon.StringValue("s"), bad, 0.9))
	if _, err := s.StateHash(); !errors.Is(err, canon.ErrInvalidStr) {
		t.Errorf("bad value: StateHash = %v", err)
	}
	if err := s.Apply(obs(canon.StringValue("s"), canon.IntValue(2), 0.9)); err == nil {
		t.Error("contest over a bad value did not stop the state")
	}
}

func TestDeepValues(t *testing.T) {
	deep := canon.IntValue(1)
	for range 10_001 {
		deep = canon.ArrayValue(deep)
	}
	obs := func(id string, value canon.Value) canon.Value {
		return canon.ObjectValue(
			canon.Member{Key: "type", Value: canon.StringValue("OBSERVATION")},
			canon.Member{Key: "event_id", Value: canon.StringValue(id)},
			canon.Member{Key: "payload", Value: canon.ObjectValue(
				canon.Member{Key: "subject", Value: canon.StringValue("s")},
				canon.Member{Key: "predicate", Value: canon.StringValue("p")},
				canon.Member{Key: "value", Value: value},
				canon.Member{Key: "confidence", Value: canon.FloatValue(0.9)},
			)},
		)
	}
	s := reducer.New()
	s.Apply(obs("e1", deep))
	if _, err := s.StateHash(); err != nil {
		t.Fatalf("deep local value: %v", err) // the encoder has no depth limit
	}
	if err := s.Apply(obs("e2", canon.IntValue(2))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StateHash(); err == nil {
		t.Error("contested entry showing a too-deep record hashed")
	}
	s.Evidence()
	bin, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var d reducer.State
	if err := d.UnmarshalBinary(bin); !errors.Is(err, reducer.ErrCorrupt) {
		t.Errorf("UnmarshalBinary of a too-deep value: %v", err)
	}
}
