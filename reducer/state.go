package reducer

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
)

// Identity and thresholds of SovereignReducerV0 0.2.0.
const (
	Name    = "SovereignReducerV0"
	Version = "0.2.0"

	// ConflictThreshold is the confidence at or above which a differing
	// observation contests a belief.
	ConflictThreshold = 0.5

	defaultObservationConfidence = 0.5
	defaultAssertionConfidence   = 0.35
)

// Namespace names one of the four belief maps of the state.
type Namespace uint8

// The namespaces, in the order their maps appear in the canonical state.
const (
	Archived Namespace = iota
	Canonical
	Contested
	Local
	numNamespaces
)

var namespaceNames = [numNamespaces]string{"archived", "canonical", "contested", "local"}

func (ns Namespace) String() string {
	if ns < numNamespaces {
		return namespaceNames[ns]
	}
	return "namespace(" + strconv.Itoa(int(ns)) + ")"
}

// Contest reasons.
const (
	reasonCanonical = iota // "conflicts_with_canonical"
	reasonLocal            // "conflicts_with_local"
)

var reasonNames = [...]string{"conflicts_with_canonical", "conflicts_with_local"}

// State is the reducer state: the four belief maps, the metadata, the
// private evidence index and the caches that make StateHash incremental.
//
// A State is not safe for concurrent use. The methods that only read it
// (Err, EventCount, LastEventID, CurrentEpoch, Len, Keys, Entry, Entries,
// Evidence, Clone) may run concurrently with each other, but not with any
// other method; the others (Apply and everything that hashes or encodes:
// StateHash, HashPreimage, PreimageValue, ExportJSON, MarshalBinary)
// update caches and need exclusive access. Use Clone to hand a State to
// readers while applying further events to the original.
type State struct {
	keys map[string]*keyState
	ar   *arena // the evidence records of every key
	// sec holds, per namespace, the keys that have ever had an entry there.
	sec [numNamespaces]section

	eventCount   int64
	lastEventID  canon.Value
	currentEpoch canon.Value
	// reducerMeta is metadata.reducer. Only FromReferenceCheckpoint sets
	// it to something other than the constant block.
	reducerMeta canon.Value

	// err is set when an event made the reference raise; the state then
	// has no hash and Apply does nothing more.
	err error

	hc hashCache

	scratch []byte
}

// section is one namespace's ordering: order is sorted by key and holds
// every key whose slot for this namespace was ever used; pending holds
// keys used since the last walk, merged into order (which is never
// shrunk, so positions before a change stay stable) by the next walk.
type section struct {
	order   []*keyState
	pending []*keyState
	live    int
}

// keyState is everything the state holds for one belief key.
type keyState struct {
	key    string
	keyEnc []byte // canonical JSON of key followed by ':'
	keyErr error  // why key cannot be canonicalised (invalid UTF-8), or nil
	slot   [numNamespaces]slot

	canon canonEntry   // valid while slot[Canonical].live
	local localEntry   // valid while slot[Local].live
	cont  contestEntry // valid while slot[Contested].live

	arch    []archEntry // never shrinks
	archEnc []byte      // canonical encodings of arch[:archN], comma-joined
	archN   int

	ev evidence
}

// slot is a key's presence in one namespace and its cached encoding.
type slot struct {
	enc     []byte // canonical bytes of the entry (unused for Archived)
	live    bool   // the namespace holds the key
	dirty   bool   // changed since the last hash walk
	ordered bool   // in section.order or section.pending
}

type canonEntry struct {
	value, attestedBy, provenance, attestationEventID canon.Value
}

type archEntry struct {
	canonEntry
	supersededBy canon.Value
	retracted    bool
}

type localEntry struct {
	value         canon.Value
	confidence    float64
	provenance    canon.Value
	actor         string
	ts            optString
	evidenceCount int64
}

type contestEntry struct {
	reason         uint8
	canonicalValue canon.Value
	// n is total_evidence_count: the entry shows the groups of the first
	// n evidence records.
	n int
	// literal, when not nil, is the whole entry as loaded from a
	// reference checkpoint without evidence (FromReferenceCheckpoint).
	literal *canon.Value

	// The encoding, set by encodeSlot: the slot's enc holds everything up
	// to the groups, then come the groups, then tail. An entry written a
	// second time gets its encoding in one piece, full, which hashes
	// faster than records scattered over the arena.
	pieces  []piece
	tail    []byte
	full    []byte
	written bool
}

// piece is one group of a contested entry's encoding: its key and the
// records it shows. idx is a capped prefix of the group's index slice;
// appends to the group never change it.
type piece struct {
	keyEnc []byte
	idx    []int32
}

// optString is a string or null (a timestamp).
type optString struct {
	s     string
	valid bool
}

func (o optString) value() canon.Value {
	if !o.valid {
		return canon.NullValue()
	}
	return canon.StringValue(o.s)
}

// New returns the state of an empty log. The zero State is equivalent.
func New() *State {
	s := new(State)
	s.init()
	return s
}

// init makes a zero State the state of an empty log.
func (s *State) init() {
	if s.keys == nil {
		s.keys = make(map[string]*keyState)
		s.ar = new(arena)
		s.reducerMeta = reducerBlock
	}
}

var reducerBlock = canon.ObjectValue(
	canon.Member{Key: "conflict_confidence_threshold", Value: canon.FloatValue(ConflictThreshold)},
	canon.Member{Key: "name", Value: canon.StringValue(Name)},
	canon.Member{Key: "version", Value: canon.StringValue(Version)},
)

// Err returns the error that stopped the state, if an applied event made
// the reference raise (an *ApplyError), else nil.
func (s *State) Err() error { return s.err }

// EventCount returns metadata.event_count: the number of JSON objects
// applied (or restored).
func (s *State) EventCount() int64 { return s.eventCount }

// LastEventID returns metadata.last_event_id: null for an empty log, else
// the last event's `event_id or id or "unknown_event"`, which can be any
// JSON value.
func (s *State) LastEventID() canon.Value { return s.lastEventID }

// CurrentEpoch returns metadata.current_epoch (null until a REDUCER_EPOCH).
func (s *State) CurrentEpoch() canon.Value { return s.currentEpoch }

// Len returns the number of keys in namespace ns.
func (s *State) Len(ns Namespace) int {
	if ns >= numNamespaces {
		return 0
	}
	return s.sec[ns].live
}

// Apply applies one parsed log entry, which may be any JSON value, as the
// reference's apply_event does (without hashing). Entries that are not
// objects are ignored and not counted.
//
// Apply returns an *ApplyError where the reference raises (a truthy
// payload that is not an object, a confidence integer too large for a
// float, or a contest over a value that cannot be canonicalised). The
// reference then has no state for the log; the State keeps the error,
// ignores further events and returns it from every method that hashes or
// encodes. Apply's cost does not depend on the size of the state.
func (s *State) Apply(ev canon.Value) error {
	if s.err != nil {
		return s.err
	}
	s.init()
	if ev.Kind() != canon.Object {
		return nil
	}
	var e envelope
	e.read(ev)
	eventID := or(or(e.eventID, e.id), unknownEvent)
	payload := or(e.payload, emptyObject)
	var err error
	if e.typ.Kind() == canon.String {
		switch e.typ.Str() {
		case "OBSERVATION":
			err = s.observe(&e, eventID, payload, defaultObservationConfidence)
		case "ASSERTION":
			err = s.observe(&e, eventID, payload, defaultAssertionConfidence)
		case "ATTESTATION":
			err = s.attest(&e, eventID, payload)
		case "RETRACTION":
			err = s.retract(eventID, payload)
		case "REDUCER_EPOCH":
			err = s.epoch(eventID, payload)
		}
	}
	if err != nil {
		s.err = &ApplyError{Count: s.eventCount, EventID: eventID, Reason: err.Error()}
		s.hc.valid = false
		return s.err
	}
	s.lastEventID = eventID
	s.eventCount++
	s.hc.valid = false
	return nil
}

// envelope holds the fields of an event the reducer reads (null when
// absent), found in one pass over its members.
type envelope struct {
	eventID, id, typ, actor, namespace, payload canon.Value
}

func (e *envelope) read(ev canon.Value) {
	for _, m := range ev.Members() {
		switch m.Key {
		case "event_id":
			e.eventID = m.Value
		case "id":
			e.id = m.Value
		case "type":
			e.typ = m.Value
		case "actor":
			e.actor = m.Value
		case "namespace":
			e.namespace = m.Value
		case "payload":
			e.payload = m.Value
		}
	}
}

// body holds the payload fields the handlers read, found in one pass.
type body struct {
	subject, predicate, value, confidence, timestamp, timestampUTC canon.Value
	actorKeyID, targetEventID                                      canon.Value
}

func (b *body) read(payload canon.Value) {
	for _, m := range payload.Members() {
		switch m.Key {
		case "subject":
			b.subject = m.Value
		case "predicate":
			b.predicate = m.Value
		case "value":
			b.value = m.Value
		case "confidence":
			b.confidence = m.Value
		case "timestamp":
			b.timestamp = m.Value
		case "timestamp_utc":
			b.timestampUTC = m.Value
		case "actor_key_id":
			b.actorKeyID = m.Value
		case "target_event_id":
			b.targetEventID = m.Value
		}
	}
}

var (
	unknownEvent = canon.StringValue("unknown_event")
	unknownActor = canon.StringValue("unknown")
	emptyObject  = canon.ObjectValue()
)

// raise is the reason an event makes the reference raise.
type raise string

func (r raise) Error() string { return string(r) }

func checkPayload(payload canon.Value) error {
	if payload.Kind() != canon.Object {
		return raise("payload is a truthy " + payload.Kind().String() + ", not an object (AttributeError)")
	}
	return nil
}

// actor returns str(e.actor or "unknown").
func (e *envelope) actorString() string {
	return pystr(or(e.actor, unknownActor))
}

// namespaceOf returns the reference's _normalize_namespace(e.namespace):
// str(raw or "local").strip().lower() if that is a namespace name, else
// "local". Only ASCII letters can lower-case into a namespace name (Python
// maps U+212A KELVIN SIGN to 'k', which no name contains), so an ASCII
// comparison is exact.
func (e *envelope) normNamespace() Namespace {
	raw := e.namespace
	if !truthy(raw) {
		return Local
	}
	var str string
	if raw.Kind() == canon.String {
		str = pyStrip(raw.Str())
	} else {
		str = pyStrip(pystr(raw))
	}
	for ns, name := range namespaceNames {
		if len(str) == len(name) && asciiEqualFold([]byte(str), name) {
			return Namespace(ns)
		}
	}
	return Local
}

// keyOf returns the belief key str(subject) + ":" + str(predicate) in
// s.scratch, or false when either is falsy.
func (s *State) keyOf(b *body) ([]byte, bool) {
	subj, pred := b.subject, b.predicate
	if !truthy(subj) || !truthy(pred) {
		return nil, false
	}
	k := s.scratch[:0]
	k = appendPystr(k, subj)
	k = append(k, ':')
	k = appendPystr(k, pred)
	s.scratch = k
	return k, true
}

func appendPystr(dst []byte, v canon.Value) []byte {
	if v.Kind() == canon.String {
		return append(dst, v.Str()...)
	}
	return appendRepr(dst, v)
}

// lookup returns the state of key, or nil.
func (s *State) lookup(key []byte) *keyState { return s.keys[string(key)] }

// ensure returns the state of key, creating it.
func (s *State) ensure(key []byte) *keyState {
	if ks := s.keys[string(key)]; ks != nil {
		return ks
	}
	return s.newKey(string(key))
}

func (s *State) newKey(key string) *keyState {
	ks := &keyState{key: key}
	ks.ev.ar = s.ar
	var err error
	if ks.keyEnc, err = canon.AppendString(nil, key); err != nil {
		// Only values built by hand, not parsed, hold invalid UTF-8.
		// The reference fails when hashing such a key, and so do we.
		ks.keyErr = err
	}
	ks.keyEnc = append(ks.keyEnc, ':')
	s.keys[key] = ks
	return ks
}

// touch marks ks's entry in ns as changed.
func (s *State) touch(ks *keyState, ns Namespace) {
	sl := &ks.slot[ns]
	sl.dirty = true
	if !sl.ordered {
		sl.ordered = true
		s.sec[ns].pending = append(s.sec[ns].pending, ks)
	}
}

func (s *State) setLive(ks *keyState, ns Namespace) {
	if !ks.slot[ns].live {
		ks.slot[ns].live = true
		s.sec[ns].live++
	}
	s.touch(ks, ns)
}

func (s *State) setDead(ks *keyState, ns Namespace) {
	if ks.slot[ns].live {
		ks.slot[ns].live = false
		s.sec[ns].live--
		s.touch(ks, ns)
	}
}

// observe handles OBSERVATION and ASSERTION (SPEC §6.4).
func (s *State) observe(e *envelope, eventID, payload canon.Value, def float64) error {
	if err := checkPayload(payload); err != nil {
		return err
	}
	var b body
	b.read(payload)
	key, ok := s.keyOf(&b)
	if !ok {
		return nil
	}
	value := b.value
	conf, ok := safeFloat(b.confidence, def)
	if !ok {
		return raise("confidence is an integer too large for a float (OverflowError)")
	}
	ts := b.timestampString()
	actor := e.actorString()
	ks := s.ensure(key)
	ks.ev.add(&record{
		eventID:    eventID,
		actor:      actor,
		ns:         e.normNamespace(),
		ts:         ts,
		value:      value,
		confidence: conf,
	})

	if ks.slot[Canonical].live && !pyEqual(ks.canon.value, value) && conf >= ConflictThreshold {
		return s.contest(ks, reasonCanonical)
	}
	if ks.slot[Local].live {
		old := ks.local.confidence
		if math.IsNaN(old) { // only possible in a restored state
			old = 0
		}
		if pyEqual(ks.local.value, value) {
			if conf <= old {
				return nil // weaker agreeing evidence is only recorded
			}
		} else if max(old, conf) >= ConflictThreshold {
			return s.contest(ks, reasonLocal)
		}
	}
	ks.local = localEntry{
		value:         value,
		confidence:    conf,
		provenance:    eventID,
		actor:         actor,
		ts:            ts,
		evidenceCount: int64(ks.ev.len()),
	}
	s.setLive(ks, Local)
	return nil
}

// timestampString returns str(payload.timestamp or payload.timestamp_utc),
// or null when that is null.
func (b *body) timestampString() optString {
	ts := or(b.timestamp, b.timestampUTC)
	if ts.IsNull() {
		return optString{}
	}
	return optString{s: pystr(ts), valid: true}
}

// contest moves key to contested with all evidence so far (SPEC §6.5). The
// groups by canonical value text are kept incrementally; the entry only
// records how much evidence it shows.
func (s *State) contest(ks *keyState, reason uint8) error {
	if ks.ev.badValues > 0 {
		return raise("contest: an evidence value cannot be canonicalised (ValueError)")
	}
	if err := ks.ev.groupUpTo(ks.ev.len()); err != nil {
		return raise("contest: an evidence value cannot be canonicalised: " + err.Error())
	}
	cv := canon.NullValue()
	if ks.slot[Canonical].live {
		cv = ks.canon.value
	}
	ks.cont = contestEntry{reason: reason, canonicalValue: cv, n: ks.ev.len()}
	s.setLive(ks, Contested)
	s.setDead(ks, Local)
	return nil
}

// attest handles ATTESTATION (SPEC §6.6).
func (s *State) attest(e *envelope, eventID, payload canon.Value) error {
	if err := checkPayload(payload); err != nil {
		return err
	}
	var b body
	b.read(payload)
	key, ok := s.keyOf(&b)
	if !ok {
		return nil
	}
	ks := s.ensure(key)
	if ks.slot[Canonical].live {
		ks.arch = append(ks.arch, archEntry{canonEntry: ks.canon, supersededBy: eventID})
		s.setLive(ks, Archived)
	}
	ks.canon = canonEntry{
		value:              b.value,
		attestedBy:         or(b.actorKeyID, canon.StringValue(e.actorString())),
		provenance:         or(b.targetEventID, eventID),
		attestationEventID: eventID,
	}
	s.setLive(ks, Canonical)
	s.setDead(ks, Local)
	s.setDead(ks, Contested)
	return nil
}

// retract handles RETRACTION (SPEC §6.7).
func (s *State) retract(eventID, payload canon.Value) error {
	if err := checkPayload(payload); err != nil {
		return err
	}
	var b body
	b.read(payload)
	key, ok := s.keyOf(&b)
	if !ok {
		return nil
	}
	ks := s.lookup(key)
	if ks == nil {
		return nil
	}
	if ks.slot[Canonical].live {
		ks.arch = append(ks.arch, archEntry{canonEntry: ks.canon, supersededBy: eventID, retracted: true})
		s.setLive(ks, Archived)
		s.setDead(ks, Canonical)
	}
	s.setDead(ks, Local)
	s.setDead(ks, Contested)
	return nil
}

// epoch handles REDUCER_EPOCH (SPEC §6.8).
func (s *State) epoch(eventID, payload canon.Value) error {
	if err := checkPayload(payload); err != nil {
		return err
	}
	s.currentEpoch = canon.ObjectValue(
		canon.Member{Key: "effective_from_event_id", Value: or(payload.Field("effective_from_event_id"), eventID)},
		canon.Member{Key: "epoch_id", Value: payload.Field("epoch_id")},
		canon.Member{Key: "ontology_versions", Value: payload.Field("ontology_versions")},
		canon.Member{Key: "reducer_hash", Value: payload.Field("reducer_hash")},
	)
	return nil
}

// sortedKeys returns the keys live in ns in canonical order without
// modifying s.
func (s *State) sortedKeys(ns Namespace) []*keyState {
	sec := &s.sec[ns]
	out := make([]*keyState, 0, sec.live)
	pend := slices.Clone(sec.pending)
	slices.SortFunc(pend, cmpKey)
	i, j := 0, 0
	for i < len(sec.order) || j < len(pend) {
		var ks *keyState
		if j == len(pend) || (i < len(sec.order) && sec.order[i].key < pend[j].key) {
			ks = sec.order[i]
			i++
		} else {
			ks = pend[j]
			j++
		}
		if ks.slot[ns].live {
			out = append(out, ks)
		}
	}
	return out
}

func cmpKey(a, b *keyState) int { return strings.Compare(a.key, b.key) }

// mergePending merges the keys used since the last walk into the order of
// each namespace.
func (s *State) mergePending() {
	for ns := range s.sec {
		sec := &s.sec[ns]
		if len(sec.pending) == 0 {
			continue
		}
		slices.SortFunc(sec.pending, cmpKey)
		merged := make([]*keyState, 0, len(sec.order)+len(sec.pending))
		i, j := 0, 0
		for i < len(sec.order) && j < len(sec.pending) {
			if sec.order[i].key < sec.pending[j].key {
				merged = append(merged, sec.order[i])
				i++
			} else {
				merged = append(merged, sec.pending[j])
				j++
			}
		}
		merged = append(merged, sec.order[i:]...)
		merged = append(merged, sec.pending[j:]...)
		sec.order = merged
		clear(sec.pending)
		sec.pending = sec.pending[:0]
	}
}
