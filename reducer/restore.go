package reducer

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/backpack-field/backpack/internal/canon"
)

// ErrMalformed is returned, wrapped with the location of the problem, for
// a state or evidence index that this reducer cannot have produced.
var ErrMalformed = errors.New("reducer: malformed state")

func malformed(where, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, where, fmt.Sprintf(format, args...))
}

// Restore rebuilds a State from its hash preimage (HashPreimage or
// PreimageValue, as a checkpoint's "state") and its evidence index
// (Evidence). Applying further events to the result gives exactly the
// state a full replay gives, unlike the reference's load_checkpoint, which
// drops the evidence (SPEC §6.10).
//
// Both values must have the exact shapes this reducer produces, and every
// contested entry must agree with the evidence it summarises; anything
// else fails with an error wrapping ErrMalformed.
func Restore(preimage, evidence canon.Value) (*State, error) {
	s := New()
	if err := s.loadEvidence(evidence); err != nil {
		return nil, err
	}
	if err := s.loadPreimage(preimage, false); err != nil {
		return nil, err
	}
	return s, nil
}

// FromReferenceCheckpoint mirrors the reference's lossy load_checkpoint
// (SPEC §6.10) on a new reducer: state is a checkpoint's "state" object,
// whose maps replace the namespaces and whose metadata_partial supplies
// last_event_id, event_count, current_epoch and (when an object) the
// reducer block. The evidence index stays empty, so later observations of
// restored keys count and group evidence as the reference does after a
// resume, not as a full replay would.
//
// Use it only to reproduce the reference's checkpoint resume byte for
// byte; Restore is the lossless way. A state that is not an object leaves
// the reducer empty, as in the reference. Contested entries are kept as
// they are; canonical, local and archived entries must have the shapes
// the reducer writes (the reference would raise or misbehave later on
// others), else the error wraps ErrMalformed.
func FromReferenceCheckpoint(state canon.Value) (*State, error) {
	s := New()
	if state.Kind() != canon.Object {
		return s, nil
	}
	if err := s.loadPreimage(state, true); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *State) loadEvidence(evidence canon.Value) error {
	if evidence.Kind() != canon.Object {
		return malformed("evidence", "%s, want an object", evidence.Kind())
	}
	for _, m := range evidence.Members() {
		if m.Value.Kind() != canon.Array {
			return malformed("evidence["+strconv.Quote(m.Key)+"]", "%s, want an array", m.Value.Kind())
		}
		if m.Value.Len() == 0 {
			continue
		}
		ks := s.newKey(m.Key)
		for i := range m.Value.Len() {
			where := fmt.Sprintf("evidence[%q][%d]", m.Key, i)
			r, err := recordFromValue(where, m.Value.Index(i))
			if err != nil {
				return err
			}
			ks.ev.add(r)
		}
	}
	return nil
}

// fields checks that v is an object with exactly the given member names,
// in canonical order, and returns its members.
func fields(where string, v canon.Value, names ...string) ([]canon.Member, error) {
	if v.Kind() != canon.Object {
		return nil, malformed(where, "%s, want an object", v.Kind())
	}
	m := v.Members()
	if len(m) != len(names) {
		return nil, malformed(where, "%d members, want %v", len(m), names)
	}
	for i, name := range names {
		if m[i].Key != name {
			return nil, malformed(where, "member %q, want %v", m[i].Key, names)
		}
	}
	return m, nil
}

func wantString(where string, v canon.Value) (string, error) {
	if v.Kind() != canon.String {
		return "", malformed(where, "%s, want a string", v.Kind())
	}
	return v.Str(), nil
}

func wantOptString(where string, v canon.Value) (optString, error) {
	if v.IsNull() {
		return optString{}, nil
	}
	str, err := wantString(where, v)
	return optString{s: str, valid: true}, err
}

func wantFloat(where string, v canon.Value) (float64, error) {
	if v.Kind() != canon.Float {
		return 0, malformed(where, "%s, want a float", v.Kind())
	}
	return v.Float(), nil
}

func wantCount(where string, v canon.Value) (int64, error) {
	n, ok := v.Int64()
	if !ok || n < 0 {
		return 0, malformed(where, "want a non-negative integer")
	}
	return n, nil
}

func recordFromValue(where string, v canon.Value) (*record, error) {
	m, err := fields(where, v, "actor", "confidence", "event_id", "namespace", "timestamp_utc", "value")
	if err != nil {
		return nil, err
	}
	r := &record{eventID: m[2].Value, value: m[5].Value}
	if r.actor, err = wantString(where+".actor", m[0].Value); err != nil {
		return nil, err
	}
	if r.confidence, err = wantFloat(where+".confidence", m[1].Value); err != nil {
		return nil, err
	}
	ns, err := wantString(where+".namespace", m[3].Value)
	if err != nil {
		return nil, err
	}
	r.ns = numNamespaces
	for i, name := range namespaceNames {
		if ns == name {
			r.ns = Namespace(i)
		}
	}
	if r.ns == numNamespaces {
		return nil, malformed(where+".namespace", "%q is not a namespace", ns)
	}
	if r.ts, err = wantOptString(where+".timestamp_utc", m[4].Value); err != nil {
		return nil, err
	}
	return r, nil
}

func canonFromValue(where string, v canon.Value) (canonEntry, error) {
	m, err := fields(where, v, "attestation_event_id", "attested_by", "provenance", "value")
	if err != nil {
		return canonEntry{}, err
	}
	return canonEntry{attestationEventID: m[0].Value, attestedBy: m[1].Value, provenance: m[2].Value, value: m[3].Value}, nil
}

func archFromValue(where string, v canon.Value) (archEntry, error) {
	names := []string{"attestation_event_id", "attested_by", "provenance", "superseded_by", "value"}
	retracted := v.Has("retracted")
	if retracted {
		names = []string{"attestation_event_id", "attested_by", "provenance", "retracted", "superseded_by", "value"}
	}
	m, err := fields(where, v, names...)
	if err != nil {
		return archEntry{}, err
	}
	if retracted {
		if !canon.Equal(m[3].Value, canon.BoolValue(true)) {
			return archEntry{}, malformed(where+".retracted", "want true")
		}
		m = append(m[:3:3], m[4:]...)
	}
	return archEntry{
		canonEntry:   canonEntry{attestationEventID: m[0].Value, attestedBy: m[1].Value, provenance: m[2].Value, value: m[4].Value},
		supersededBy: m[3].Value,
		retracted:    retracted,
	}, nil
}

func localFromValue(where string, v canon.Value) (localEntry, error) {
	m, err := fields(where, v, "actor", "confidence", "evidence_count", "provenance", "timestamp", "value")
	if err != nil {
		return localEntry{}, err
	}
	l := localEntry{provenance: m[3].Value, value: m[5].Value}
	if l.actor, err = wantString(where+".actor", m[0].Value); err != nil {
		return l, err
	}
	if l.confidence, err = wantFloat(where+".confidence", m[1].Value); err != nil {
		return l, err
	}
	if l.evidenceCount, err = wantCount(where+".evidence_count", m[2].Value); err != nil {
		return l, err
	}
	if l.ts, err = wantOptString(where+".timestamp", m[4].Value); err != nil {
		return l, err
	}
	return l, nil
}

// loadPreimage loads the namespaces and metadata. With lossy (a reference
// checkpoint) it follows load_checkpoint: absent parts are empty, contested
// entries are literal and the metadata is taken leniently.
func (s *State) loadPreimage(pre canon.Value, lossy bool) error {
	var sections [numNamespaces]canon.Value
	var meta canon.Value
	if lossy {
		for ns, name := range namespaceNames {
			sections[ns] = pre.Field(name)
			if sections[ns].IsNull() && !pre.Has(name) {
				sections[ns] = emptyObject
			}
		}
		meta = pre.Field("metadata_partial")
	} else {
		m, err := fields("state", pre, "archived", "canonical", "contested", "local", "metadata_partial")
		if err != nil {
			return err
		}
		for ns := range numNamespaces {
			sections[ns] = m[ns].Value
		}
		meta = m[4].Value
	}
	for ns := range numNamespaces {
		if sections[ns].Kind() != canon.Object {
			return malformed(namespaceNames[ns], "%s, want an object", sections[ns].Kind())
		}
		for _, m := range sections[ns].Members() {
			if err := s.loadEntry(Namespace(ns), m.Key, m.Value, lossy); err != nil {
				return err
			}
		}
	}
	if lossy {
		return s.loadReferenceMetadata(meta)
	}
	m, err := fields("metadata_partial", meta, "current_epoch", "event_count", "last_event_id", "reducer")
	if err != nil {
		return err
	}
	if s.eventCount, err = wantCount("metadata_partial.event_count", m[1].Value); err != nil {
		return err
	}
	if !canon.Equal(m[3].Value, reducerBlock) {
		return malformed("metadata_partial.reducer", "not the block of %s %s", Name, Version)
	}
	s.currentEpoch, s.lastEventID = m[0].Value, m[2].Value
	return nil
}

func (s *State) loadEntry(ns Namespace, key string, v canon.Value, lossy bool) error {
	where := namespaceNames[ns] + "[" + strconv.Quote(key) + "]"
	ks := s.keys[key]
	if ks == nil {
		ks = s.newKey(key)
	}
	var err error
	switch ns {
	case Canonical:
		ks.canon, err = canonFromValue(where, v)
	case Local:
		ks.local, err = localFromValue(where, v)
	case Archived:
		if v.Kind() != canon.Array {
			return malformed(where, "%s, want an array", v.Kind())
		}
		for i := range v.Len() {
			a, err := archFromValue(fmt.Sprintf("%s[%d]", where, i), v.Index(i))
			if err != nil {
				return err
			}
			ks.arch = append(ks.arch, a)
		}
	case Contested:
		if lossy {
			lit := v
			ks.cont = contestEntry{literal: &lit}
		} else {
			err = s.loadContested(where, ks, v)
		}
	}
	if err != nil {
		return err
	}
	s.setLive(ks, ns)
	return nil
}

// loadContested rebuilds a contested entry as a snapshot of the evidence
// and checks that it shows exactly what the preimage says.
func (s *State) loadContested(where string, ks *keyState, v canon.Value) error {
	m, err := fields(where, v, "canonical_value", "evidence_by_value", "reason", "status", "total_evidence_count")
	if err != nil {
		return err
	}
	c := contestEntry{canonicalValue: m[0].Value, reason: 255}
	for i, r := range reasonNames {
		if canon.Equal(m[2].Value, canon.StringValue(r)) {
			c.reason = uint8(i)
		}
	}
	if c.reason == 255 {
		return malformed(where+".reason", "not a contest reason")
	}
	if !canon.Equal(m[3].Value, canon.StringValue("AWAITING_RESOLUTION")) {
		return malformed(where+".status", "want AWAITING_RESOLUTION")
	}
	n, err := wantCount(where+".total_evidence_count", m[4].Value)
	if err != nil {
		return err
	}
	if n < 1 || n > int64(ks.ev.len()) {
		return malformed(where+".total_evidence_count", "%d, but the key has %d evidence records", n, ks.ev.len())
	}
	c.n = int(n)
	if err := ks.ev.groupUpTo(c.n); err != nil {
		return malformed(where, "evidence value cannot be canonicalised: %v", err)
	}
	ks.cont = c
	if got := ks.contestedValue(); !canon.Equal(got.Field("evidence_by_value"), m[1].Value) {
		return malformed(where+".evidence_by_value", "does not match the evidence")
	}
	return nil
}

// loadReferenceMetadata follows load_checkpoint's metadata handling.
func (s *State) loadReferenceMetadata(meta canon.Value) error {
	if meta.Kind() != canon.Object {
		return nil
	}
	s.lastEventID = meta.Field("last_event_id")
	s.currentEpoch = meta.Field("current_epoch")
	n, err := pyInt(meta.Field("event_count"), meta.Has("event_count"))
	if err != nil {
		return malformed("metadata_partial.event_count", "%v", err)
	}
	s.eventCount = n
	if r := meta.Field("reducer"); r.Kind() == canon.Object {
		s.reducerMeta = r
	}
	return nil
}

// pyInt is Python's int(v) for the values load_checkpoint meets in
// event_count (an absent count is 0). Strings are not supported.
func pyInt(v canon.Value, present bool) (int64, error) {
	if !present {
		return 0, nil
	}
	switch v.Kind() {
	case canon.Int:
		if n, ok := v.Int64(); ok {
			return n, nil
		}
	case canon.Bool:
		if v.Bool() {
			return 1, nil
		}
		return 0, nil
	case canon.Float:
		f := math.Trunc(v.Float())
		if f >= -(1<<63) && f < 1<<63 {
			return int64(f), nil
		}
	}
	return 0, fmt.Errorf("int() of %s is not supported", v.Kind())
}
