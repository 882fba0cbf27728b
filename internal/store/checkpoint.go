package store

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/merkle"
	"github.com/backpack-field/backpack/reducer"
)

// Checkpoints are signed reducer snapshots in the reference's format
// (SPEC.md §7): checkpoints/<event_count, 10 digits>.chk holding
// canon({event_count, key_id, last_event_id, merkle_root, signed_at_utc,
// spec_version, state, sig}). backpack adds three members, covered by the
// signature and ignored by the reference's loader: "backpack_resume", which
// holds the reducer's evidence index (the reference drops it and so
// resumes lossily) and where in the log the snapshot was taken (offset,
// line and entry counts, SHA-256 of the log prefix, actor heads). A
// backpack checkpoint therefore resumes to exactly the state a full replay
// gives, and only onto the log it was taken from.

const maxCheckpoint = 512 << 20

// Checkpoint is a parsed checkpoint file.
type Checkpoint struct {
	Name        string
	EventCount  int64
	KeyID       string
	LastEventID canon.Value
	MerkleRoot  canon.Value
	SignedAt    string
	State       canon.Value // the state-hash preimage
	Evidence    canon.Value // null in reference-made checkpoints
	LogOffset   int64       // -1 when absent
	LogPrefix   string
	Raw         canon.Value
	resume      *cacheFile
}

// StateHash returns SHA-256 of the canonical state, which equals the
// reducer's state_hash at checkpoint time.
func (c *Checkpoint) StateHash() (string, error) {
	b, err := canon.Encode(c.State)
	if err != nil {
		return "", err
	}
	return merkle.Sum(b).String(), nil
}

// Lossless reports whether the checkpoint carries what an exact resume
// needs.
func (c *Checkpoint) Lossless() bool {
	return c.Evidence.Kind() == canon.Object && c.LogOffset >= 0
}

// ParseCheckpoint parses a checkpoint file.
func ParseCheckpoint(name string, data []byte) (*Checkpoint, error) {
	v, err := canon.Limits{MaxSize: maxCheckpoint}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if v.Kind() != canon.Object {
		return nil, fmt.Errorf("checkpoint %s: not an object", name)
	}
	c := &Checkpoint{
		Name: name, KeyID: v.Field("key_id").Str(), LastEventID: v.Field("last_event_id"),
		MerkleRoot: v.Field("merkle_root"), SignedAt: v.Field("signed_at_utc").Str(),
		State: v.Field("state"), Raw: v,
	}
	r := v.Field("backpack_resume")
	c.Evidence = r.Field("evidence")
	c.resume = parseResume(r)
	c.LogOffset, c.LogPrefix = c.resume.offset, c.resume.prefix
	var ok bool
	if c.EventCount, ok = v.Field("event_count").Int64(); !ok {
		return nil, fmt.Errorf("checkpoint %s: event_count is not an integer", name)
	}
	if c.State.Kind() != canon.Object {
		return nil, fmt.Errorf("checkpoint %s: no state", name)
	}
	return c, nil
}

// Verify checks the checkpoint's signature with the backpack's registry.
func (c *Checkpoint) Verify(reg *bplog.Registry) error {
	pub, err := reg.Resolve(c.KeyID)
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(c.Raw.Field("sig").Str())
	if err != nil || len(sig) != ed25519.SignatureSize {
		return bplog.ErrBadSignature
	}
	msg, err := canon.Encode(c.Raw.Without("sig"))
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return bplog.ErrBadSignature
	}
	return nil
}

// Restore returns the reducer state the checkpoint holds (lossless
// checkpoints only).
func (c *Checkpoint) Restore() (*reducer.State, error) {
	if !c.Lossless() {
		return nil, errors.New("store: reference checkpoint has no evidence index; resuming from it would be lossy")
	}
	return reducer.Restore(c.State, c.Evidence)
}

// ListCheckpoints returns the checkpoint file names in dir, oldest first.
func ListCheckpoints(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, CheckpointsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".chk") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Checkpoint writes a signed checkpoint of the current state and rebuilds
// the manifest so that the new file is listed (the reference leaves it a
// phantom). It returns the file's path relative to the backpack.
func (b *Backpack) Checkpoint() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.writableLocked(); err != nil {
		return "", err
	}
	if b.signer == nil {
		return "", ErrNoKey
	}
	state, err := b.stateLocked()
	if err != nil {
		return "", err
	}
	pre, err := state.PreimageValue()
	if err != nil {
		return "", err
	}
	root := canon.NullValue()
	if data, err := os.ReadFile(b.path(MerkleRootPath)); err == nil {
		root = canon.StringValue(strings.TrimSpace(string(data)))
	}
	count := int64(state.EventCount())
	var o canon.ObjectBuilder
	o.Set("event_count", canon.IntValue(count)).
		Set("key_id", canon.StringValue(b.signer.KeyID)).
		Set("last_event_id", state.LastEventID()).
		Set("merkle_root", root).
		Set("signed_at_utc", canon.StringValue(pytime.FormatUTC(b.opts.Now()))).
		Set("spec_version", canon.StringValue("1.0")).
		Set("state", pre).
		Set("backpack_resume", b.resumeInfoLocked().With("evidence", state.Evidence()))
	v := o.Value()
	msg, err := canon.Encode(v)
	if err != nil {
		return "", err
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(b.signer.Key, msg))
	data, err := canon.Encode(v.With("sig", canon.StringValue(sig)))
	if err != nil {
		return "", err
	}
	rel := fmt.Sprintf("%s/%010d.chk", CheckpointsDir, count)
	if err := os.MkdirAll(b.path(CheckpointsDir), 0o755); err != nil {
		return "", err
	}
	if old, err := os.ReadFile(b.path(rel)); err == nil && !bytes.Equal(old, data) {
		b.log.Info("replacing checkpoint at the same event count", "file", rel)
	}
	if err := writeFileAtomic(b.path(rel), data, 0o644); err != nil {
		return "", err
	}
	b.files.remember(b.path(rel), rel, merkle.Sum(data))
	if err := b.writeDerivedLocked(); err != nil {
		return rel, err
	}
	return rel, b.publishLocked()
}

// resumeFromCheckpoint loads the newest checkpoint that is signed by a
// trusted key, lossless, and taken from a prefix of this very log.
func (b *Backpack) resumeFromCheckpoint(f *os.File) error {
	names, err := ListCheckpoints(b.dir)
	if err != nil {
		return err
	}
	for i := len(names) - 1; i >= 0; i-- {
		data, err := os.ReadFile(filepath.Join(b.dir, CheckpointsDir, names[i]))
		if err != nil {
			continue
		}
		cp, err := ParseCheckpoint(names[i], data)
		if err != nil || !cp.Lossless() || cp.Verify(b.reg) != nil {
			continue
		}
		st, err := cp.Restore()
		if err != nil {
			continue
		}
		c := cp.resume
		c.state = st
		ok, err := b.prefixMatches(f, c, nil)
		if err != nil {
			return err
		}
		if ok {
			b.applyCache(c)
			b.cacheSize = -1
			b.log.Info("resumed from checkpoint", "file", names[i], "events", cp.EventCount)
			return nil
		}
	}
	return nil
}
