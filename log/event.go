package log

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
)

// Limits for one event line. A line longer than MaxLineSize is reported and
// not parsed.
const (
	MaxLineSize  = 4 << 20
	MaxDepth     = 64
	IDPrefix     = "evt_"
	idHexLen     = 24
	sigB64Len    = 88
	envelopeKeys = 10
)

var lineLimits = canon.Limits{MaxSize: MaxLineSize, MaxDepth: MaxDepth}

// Errors about single events.
var (
	ErrNotObject     = errors.New("log: event is not a JSON object")
	ErrBadSignature  = errors.New("log: signature does not verify")
	ErrNoSignature   = errors.New("log: event has no signature")
	ErrUnknownKey    = errors.New("log: signing key is not in identity/keys.json")
	ErrRevokedKey    = errors.New("log: signing key is revoked")
	ErrBadEventID    = errors.New("log: event_id does not match the event's content")
	ErrLocked        = errors.New("log: events.ndjson is locked by another writer")
	ErrTornTail      = errors.New("log: events.ndjson ends with a torn line")
	ErrNotCanonical  = errors.New("log: value cannot be canonicalised")
	errNoKeyIDForSig = errors.New("log: signed event has no actor_key_id")
)

// FieldError reports an envelope field that is missing or has the wrong
// type.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("log: field %q %s", e.Field, e.Msg) }

// Event is a parsed event with its envelope fields extracted. Value holds
// the whole object (the reducer and re-encoding use it); the other fields
// are views of it.
type Event struct {
	Value     canon.Value
	ID        string // event_id
	Type      string
	Actor     string
	KeyID     string // actor_key_id
	Sig       string
	Timestamp string // timestamp_utc
	Prev      string // prev_event_hash; "" when null or absent
	HasPrev   bool   // prev_event_hash is a non-null string
}

// ParseLine parses one line of events.ndjson (already stripped) into a
// JSON value with the event limits. Any JSON value is returned; NewEvent
// decides whether it is a usable event.
func ParseLine(line []byte) (canon.Value, error) {
	return lineLimits.Parse(line)
}

// Parse parses a line and extracts the envelope.
func Parse(line []byte) (*Event, error) {
	v, err := ParseLine(line)
	if err != nil {
		return nil, err
	}
	return NewEvent(v)
}

// NewEvent extracts the envelope of a parsed event. It requires an object
// with string event_id, type and actor, and a prev_event_hash that is a
// string or null (absent counts as null). actor_key_id, sig and
// timestamp_utc must be strings when present. When it returns an error
// other than ErrNotObject it still returns the Event with what it could
// read.
func NewEvent(v canon.Value) (*Event, error) {
	if v.Kind() != canon.Object {
		return nil, ErrNotObject
	}
	e := &Event{Value: v}
	var firstErr error
	str := func(key string, required bool) string {
		f, ok := v.Get(key)
		switch {
		case !ok && required:
			if firstErr == nil {
				firstErr = &FieldError{key, "is missing"}
			}
		case ok && f.Kind() != canon.String:
			if firstErr == nil {
				firstErr = &FieldError{key, "is a " + f.Kind().String() + ", not a string"}
			}
		}
		return f.Str()
	}
	e.ID = str("event_id", true)
	e.Type = str("type", true)
	e.Actor = str("actor", true)
	e.KeyID = str("actor_key_id", false)
	e.Sig = str("sig", false)
	e.Timestamp = str("timestamp_utc", false)
	if p, ok := v.Get("prev_event_hash"); ok {
		switch p.Kind() {
		case canon.Null:
		case canon.String:
			e.Prev, e.HasPrev = p.Str(), true
		default:
			if firstErr == nil {
				firstErr = &FieldError{"prev_event_hash", "is a " + p.Kind().String() + ", not a string or null"}
			}
		}
	}
	if firstErr == nil && e.ID == "" {
		firstErr = &FieldError{"event_id", "is empty"}
	}
	if firstErr == nil && e.Actor == "" {
		firstErr = &FieldError{"actor", "is empty"}
	}
	return e, firstErr
}

// IDRule says which derivation an event_id follows.
type IDRule uint8

const (
	// IDMismatch: the event_id matches neither rule.
	IDMismatch IDRule = iota
	// IDProfile: SHA-256 over the event minus event_id and sig (what
	// bootstrap and backpack write).
	IDProfile
	// IDLegacy: the same without actor_key_id, as the reference's CLI
	// append, SDK, key rotation and redaction compute it.
	IDLegacy
)

func (r IDRule) String() string {
	switch r {
	case IDProfile:
		return "profile"
	case IDLegacy:
		return "legacy"
	}
	return "mismatch"
}

// ComputeID returns the profile-rule event_id of v (an object; event_id
// and sig are ignored).
func ComputeID(v canon.Value) (string, error) {
	return idOf(v.Without("event_id", "sig"))
}

// ComputeLegacyID returns the legacy-rule event_id of v (computed without
// event_id, sig and actor_key_id).
func ComputeLegacyID(v canon.Value) (string, error) {
	return idOf(v.Without("event_id", "sig", "actor_key_id"))
}

func idOf(v canon.Value) (string, error) {
	b, err := canon.Encode(v)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotCanonical, err)
	}
	sum := sha256.Sum256(b)
	return IDPrefix + hex.EncodeToString(sum[:idHexLen/2]), nil
}

// CheckID reports which rule e's event_id follows, and the profile-rule id
// it should have.
func (e *Event) CheckID() (IDRule, string, error) {
	want, err := ComputeID(e.Value)
	if err != nil {
		return IDMismatch, "", err
	}
	if e.ID == want {
		return IDProfile, want, nil
	}
	if e.Value.Has("actor_key_id") {
		legacy, err := ComputeLegacyID(e.Value)
		if err == nil && e.ID == legacy {
			return IDLegacy, want, nil
		}
	}
	return IDMismatch, want, nil
}

// SignedBytes returns the bytes the signature covers: the canonical JSON
// of the event without sig.
func (e *Event) SignedBytes() ([]byte, error) {
	b, err := canon.Encode(e.Value.Without("sig"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotCanonical, err)
	}
	return b, nil
}

// VerifySignature checks e's signature with pub. It returns
// ErrNoSignature, ErrBadSignature, or an encoding error.
func (e *Event) VerifySignature(pub ed25519.PublicKey) error {
	msg, err := e.SignedBytes()
	if err != nil {
		return err
	}
	k, err := NewVerifyKey(pub)
	if err != nil {
		if e.Sig == "" {
			return ErrNoSignature
		}
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return e.VerifySignatureWith(k, msg)
}

func decodeSig(s string) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: sig is not %d bytes of base64", ErrBadSignature, ed25519.SignatureSize)
	}
	return sig, nil
}

// Signer signs events with one device key.
type Signer struct {
	KeyID string
	Key   ed25519.PrivateKey
}

// Seal turns an unsigned event body into a signed event the way backpack
// writes every event: actor_key_id set to the signer's key, event_id by the
// profile rule (with actor_key_id in the preimage), then sig over the
// canonical bytes of everything but sig. It returns the event and its
// canonical line (without newline).
func (s Signer) Seal(body canon.Value) (*Event, []byte, error) {
	if body.Kind() != canon.Object {
		return nil, nil, ErrNotObject
	}
	v := body.Without("event_id", "sig").With("actor_key_id", canon.StringValue(s.KeyID))
	id, err := ComputeID(v)
	if err != nil {
		return nil, nil, err
	}
	v = v.With("event_id", canon.StringValue(id))
	msg, err := canon.Encode(v)
	if err != nil {
		return nil, nil, err
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(s.Key, msg))
	v = v.With("sig", canon.StringValue(sig))
	line, err := canon.Encode(v)
	if err != nil {
		return nil, nil, err
	}
	e, err := NewEvent(v)
	if err != nil {
		return nil, nil, err
	}
	return e, line, nil
}

// Encodings returns, from one encoding pass, the canonical bytes of the
// whole event, of the event without sig (what the signature covers) and
// of the event without event_id and sig (the profile-rule id preimage).
func (e *Event) Encodings() (full, signed, idPre []byte, err error) {
	members := e.Value.Members()
	buf := make([]byte, 0, 512)
	type span struct{ start, end int }
	spans := make([]span, len(members))
	for i, m := range members {
		start := len(buf)
		if buf, err = canon.AppendString(buf, m.Key); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %w", ErrNotCanonical, err)
		}
		buf = append(buf, ':')
		if buf, err = canon.AppendEncode(buf, m.Value); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %w", ErrNotCanonical, err)
		}
		spans[i] = span{start, len(buf)}
	}
	out := make([]byte, 0, 3*len(buf)+6+2*len(members))
	build := func(skip1, skip2 string) []byte {
		start := len(out)
		out = append(out, '{')
		first := true
		for i, m := range members {
			if m.Key == skip1 || m.Key == skip2 {
				continue
			}
			if !first {
				out = append(out, ',')
			}
			first = false
			out = append(out, buf[spans[i].start:spans[i].end]...)
		}
		out = append(out, '}')
		return out[start:len(out):len(out)]
	}
	full = build("", "")
	signed = build("sig", "")
	idPre = build("sig", "event_id")
	return full, signed, idPre, nil
}

// IDFromPreimage returns the event_id for canonical id-preimage bytes.
func IDFromPreimage(pre []byte) string {
	sum := sha256.Sum256(pre)
	return IDPrefix + hex.EncodeToString(sum[:idHexLen/2])
}

// CheckIDWith is CheckID given the profile preimage from Encodings.
func (e *Event) CheckIDWith(idPre []byte) (IDRule, string, error) {
	want := IDFromPreimage(idPre)
	if e.ID == want {
		return IDProfile, want, nil
	}
	if e.Value.Has("actor_key_id") {
		legacy, err := ComputeLegacyID(e.Value)
		if err == nil && e.ID == legacy {
			return IDLegacy, want, nil
		}
	}
	return IDMismatch, want, nil
}

// VerifySignatureWith is VerifySignature with a prepared key and the
// signed bytes from Encodings.
func (e *Event) VerifySignatureWith(k *VerifyKey, signed []byte) error {
	if e.Sig == "" {
		return ErrNoSignature
	}
	sig, err := decodeSig(e.Sig)
	if err != nil {
		return err
	}
	if !k.Verify(signed, sig) {
		return ErrBadSignature
	}
	return nil
}
