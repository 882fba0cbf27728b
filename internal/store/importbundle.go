package store

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// RefusedError is a bundle refused as a whole: damaged, signed badly,
// for another backpack, or not a bundle. ImportBundle has already copied
// it to the quarantine with the reason.
type RefusedError struct{ Err error }

func (r *RefusedError) Error() string { return r.Err.Error() }
func (r *RefusedError) Unwrap() error { return r.Err }

// ImportResult is what ImportBundle did with one bundle.
type ImportResult struct {
	*IngestResult
	// Seen are the untrusted keys the bundle carried that were recorded
	// as seen on this device (never trusted).
	Seen []SeenKey `json:"seen,omitempty"`
	// SenderKeyID is the backpack bundle's sender ("" for a
	// provara_delta_v1 file).
	SenderKeyID string `json:"sender_key_id,omitempty"`
}

// ImportBundle imports the bundle file at path (a backpack.bundle.v1 or a
// provara_delta_v1 file) through the checks docs/FORMAT.md lists: size
// limits, header, the bundle's signature, then every event by Ingest. A
// bundle refused as a whole is copied to the quarantine and returned as
// a *RefusedError; other errors are I/O or store failures.
func (b *Backpack) ImportBundle(ctx context.Context, path string) (*ImportResult, error) {
	b.mu.Lock()
	err := b.writableLocked()
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(8)
	refuse := func(err error) (*ImportResult, error) {
		if qerr := b.QuarantineFile(path, err.Error()); qerr != nil {
			return nil, errors.Join(err, qerr)
		}
		return nil, &RefusedError{err}
	}
	where := path
	if abs, err := filepath.Abs(path); err == nil {
		where = abs
	}
	var offers []SeenOffer
	out := &ImportResult{}
	switch bundles.Sniff(head) {
	case bundles.KindBackpack:
		bd, err := bundles.Decode(br, bundles.Limits{})
		if err != nil {
			return refuse(err)
		}
		if bd.Header.UID != b.UID() {
			return refuse(fmt.Errorf("bundle is for backpack %q, this is %q", bd.Header.UID, b.UID()))
		}
		out.SenderKeyID = bd.Header.SenderKeyID
		source := filepath.Base(path) + " from " + bd.Header.SenderKeyID
		switch err := bd.VerifySignature(b.Registry()); {
		case errors.Is(err, bundles.ErrUnknownSender):
			// A device this one does not trust yet (a new device, before
			// `trust`): its bundle cannot be authenticated, but every event
			// carries its own signature and is checked one by one; those by
			// untrusted keys wait in the quarantine. When the bundle
			// carries the sender's key, the header must verify with it,
			// and the key is recorded as seen (not trusted).
			source += " (sender not trusted)"
			if bd.Header.SenderPublicKey != nil {
				if err := bd.VerifyCarried(); err != nil {
					return refuse(fmt.Errorf("the header does not verify with the sender key it carries: %w", err))
				}
				offers = append(offers, SeenOffer{Public: bd.Header.SenderPublicKey, Sender: true})
			}
		case err != nil:
			return refuse(err)
		}
		if out.IngestResult, err = b.Ingest(ctx, bd.Events, source); err != nil {
			return nil, err
		}
	case bundles.KindReference:
		rb, err := bundles.DecodeReference(br, bundles.Limits{})
		if err != nil {
			return refuse(err)
		}
		if out.IngestResult, err = b.Ingest(ctx, rb.Events, filepath.Base(path)+" (provara_delta_v1)"); err != nil {
			return nil, err
		}
		for _, r := range rb.Rejected {
			out.Rejected = append(out.Rejected, HeldEvent{Reason: r.Error()})
		}
		offers = referenceOffers(rb.Keys)
	default:
		return refuse(errors.New("not a bundle (neither a backpack bundle nor a provara_delta_v1 file)"))
	}
	if len(offers) > 0 {
		seen, err := b.NoteSeenKeys(offers, where)
		if err != nil {
			return nil, err
		}
		out.Seen = seen
	}
	return out, nil
}

// referenceOffers are the well-formed keys of a provara_delta_v1 header:
// entries whose public_key_b64 is a 32-byte key and whose key_id, if
// present, is that key's id. Untrusted: only recorded as seen.
func referenceOffers(keys canon.Value) []SeenOffer {
	var out []SeenOffer
	for _, k := range keys.Elems() {
		pub, err := base64.StdEncoding.DecodeString(k.Field("public_key_b64").Str())
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		if id := k.Field("key_id").Str(); id != "" && id != bplog.KeyID(pub) {
			continue
		}
		out = append(out, SeenOffer{Public: pub})
	}
	return out
}
