package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
)

// Fencing tokens (SPEC.md §8.5) let a device claim "I act on the log as
// it stands at event X": token_hash = SHA-256 of
// "latest_event_id:timestamp:nonce", signed (the hex text) by the device
// key. The construction and bytes are the reference's. Unlike the
// reference, backpack calls a token stale once the log has moved past the
// event it names.

// ErrStaleToken: the token is valid but the log has advanced since.
var ErrStaleToken = errors.New("store: fencing token is stale: the log has advanced")

// ErrBadToken: the token is malformed, its hash is wrong, or its signature
// does not verify with a trusted key.
var ErrBadToken = errors.New("store: invalid fencing token")

// MakeFenceToken builds a token (canonical JSON) the reference's way.
func MakeFenceToken(key ed25519.PrivateKey, keyID, latestEventID, timestamp, nonceHex string) []byte {
	sum := sha256.Sum256([]byte(latestEventID + ":" + timestamp + ":" + nonceHex))
	th := hex.EncodeToString(sum[:])
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, []byte(th)))
	var o canon.ObjectBuilder
	o.Set("key_id", canon.StringValue(keyID)).Set("latest_event_id", canon.StringValue(latestEventID)).
		Set("nonce", canon.StringValue(nonceHex)).Set("sig", canon.StringValue(sig)).
		Set("timestamp", canon.StringValue(timestamp)).Set("token_hash", canon.StringValue(th))
	return canon.MustEncode(o.Value())
}

// FenceToken makes a token naming the log's last event in file order.
func (b *Backpack) FenceToken() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.signer == nil {
		return nil, ErrNoKey
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	state, err := b.stateLocked()
	if err != nil {
		return nil, err
	}
	last := ""
	if v := state.LastEventID(); v.Kind() == canon.String {
		last = v.Str()
	}
	return MakeFenceToken(b.signer.Key, b.signer.KeyID, last, pytime.FormatUTC(b.opts.Now()), hex.EncodeToString(nonce[:])), nil
}

// FenceInfo describes a checked token.
type FenceInfo struct {
	KeyID         string `json:"key_id"`
	LatestEventID string `json:"latest_event_id"`
	Timestamp     string `json:"timestamp"`
	CurrentLast   string `json:"current_last_event_id"`
	Fresh         bool   `json:"fresh"`
}

// CheckFenceToken verifies a token against the backpack: fields, hash,
// signature by a key identity/keys.json trusts, the named event present in
// the log (as the reference checks), and fresh: still the log's last event
// (ErrStaleToken otherwise).
func (b *Backpack) CheckFenceToken(token []byte) (*FenceInfo, error) {
	v, err := canon.Limits{MaxSize: 64 << 10, MaxDepth: 4}.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	for _, f := range []string{"key_id", "latest_event_id", "nonce", "sig", "timestamp", "token_hash"} {
		if v.Field(f).Kind() != canon.String {
			return nil, fmt.Errorf("%w: field %q missing or not a string", ErrBadToken, f)
		}
	}
	info := &FenceInfo{KeyID: v.Field("key_id").Str(), LatestEventID: v.Field("latest_event_id").Str(), Timestamp: v.Field("timestamp").Str()}
	sum := sha256.Sum256([]byte(info.LatestEventID + ":" + info.Timestamp + ":" + v.Field("nonce").Str()))
	if hex.EncodeToString(sum[:]) != v.Field("token_hash").Str() {
		return nil, fmt.Errorf("%w: token_hash does not match its fields", ErrBadToken)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	vk, err := b.reg.ResolveVerifier(info.KeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrBadToken, info.KeyID, err)
	}
	sig, err := base64.StdEncoding.DecodeString(v.Field("sig").Str())
	if err != nil || !vk.Verify([]byte(v.Field("token_hash").Str()), sig) {
		return nil, fmt.Errorf("%w: signature does not verify", ErrBadToken)
	}
	state, err := b.stateLocked()
	if err != nil {
		return nil, err
	}
	if lv := state.LastEventID(); lv.Kind() == canon.String {
		info.CurrentLast = lv.Str()
	}
	if info.LatestEventID != "" {
		x, err := b.indexLocked(context.Background())
		if err != nil {
			return nil, err
		}
		if _, ok := x.byID[info.LatestEventID]; !ok {
			return info, fmt.Errorf("%w: event %s is not in the log", ErrBadToken, info.LatestEventID)
		}
	}
	if info.LatestEventID != info.CurrentLast {
		return info, fmt.Errorf("%w (token names %s, the log ends at %s)", ErrStaleToken, info.LatestEventID, info.CurrentLast)
	}
	info.Fresh = true
	return info, nil
}
