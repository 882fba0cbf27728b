package cli

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func runExport(e *env, args []string) error {
	fs := newFlags(e, "export", "DIR -o FILE [--since FRONTIER_FILE] [--format backpack|provara]", `Write the events that a holder of FRONTIER_FILE (another device's
`+"`backpack frontier`"+` output) lacks, or all events without --since, as one bundle:
by default a zstd-compressed backpack bundle signed by this device's key
(docs/FORMAT.md), which carries this device's public key and, without
--since, the backpack's genesis, keys.json and policies, so that a new
device can `+"`backpack join`"+` from it; with --format provara, the reference's
uncompressed provara_delta_v1 file that `+"`provara`"+` tools can import.`)
	out := fs.String("o", "", "output file (required); written through a temp file and rename")
	since := fs.String("since", "", "frontier file of the receiving device")
	format := fs.String("format", "backpack", "backpack or provara")
	key := fs.String("key", "", "device key file (signs the bundle)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	if *out == "" {
		fs.usage(false)
		return usagef("-o FILE is required")
	}
	var basis bplog.Frontier
	if *since != "" {
		data, err := os.ReadFile(*since)
		if err != nil {
			return err
		}
		if basis, err = bplog.ParseFrontier(data); err != nil {
			return err
		}
	}
	b, err := store.Open(e.ctx, dir, store.Options{ReadOnly: true, KeyFile: *key, Logger: e.logger()})
	if err != nil {
		return err
	}
	defer b.Close()
	lines, err := b.Delta(e.ctx, basis)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	now := pytime.FormatUTC(timeNow())
	switch *format {
	case "backpack":
		key, err := b.SigningKey()
		if err != nil {
			return err
		}
		h := bundles.Header{UID: b.UID(), SenderKeyID: key.ID, Sender: b.Frontier(), Basis: basis, CreatedAt: now}
		if h.Full() {
			// A full export carries what a new device needs to join from it.
			if h.Files, err = b.StaticFiles(bundles.Limits{}); err != nil {
				return err
			}
		}
		if _, err := bundles.Encode(&buf, h, lines, key.Key, bundles.EncodeOptions{}); err != nil {
			return err
		}
	case "provara":
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(store.KeysPath)))
		if err != nil {
			return err
		}
		kv, err := canon.Parse(data)
		if err != nil {
			return err
		}
		if err := bundles.EncodeReference(&buf, lines, kv.Field("keys"), canon.NullValue(), now); err != nil {
			return err
		}
	default:
		return usagef("--format must be backpack or provara")
	}
	if err := writeOut(*out, buf.Bytes()); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"file": *out, "events": len(lines), "bytes": buf.Len(), "format": *format})
	}
	fmt.Fprintf(e.stdout, "exported %d events to %s (%d bytes, %s)\n", len(lines), *out, buf.Len(), *format)
	return nil
}

func runImport(e *env, args []string) error {
	fs := newFlags(e, "import", "DIR FILE... [flags]", `Import bundles (backpack bundles or the reference's provara_delta_v1 files)
into DIR. Each bundle is checked in a fixed order: size limits, header,
the bundle's signature (by a key DIR trusts), then every event: id,
signature against DIR's keys (never keys the bundle carries), chain
position. Events by untrusted keys wait in the quarantine, events whose
predecessor is missing wait as pending, forks are kept as evidence.
Importing the same bundle twice changes nothing. A bundle refused as a
whole (damaged, bad signature, another backpack) is copied to the
quarantine with the reason, and the exit status is 1.
When a bundle carries the public key of an untrusted sender (or of the
keys its events wait for), the key is recorded as seen on this device,
never trusted: after comparing its fingerprint, `+"`backpack trust DIR KEYID`"+`
trusts it.`)
	key := fs.String("key", "", "device key file")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		fs.usage(false)
		return usagef("need DIR and at least one FILE")
	}
	refused := 0
	err = withWriter(e, pos[0], *key, func(b *store.Backpack) error {
		for _, file := range pos[1:] {
			res, err := importOne(e, b, file)
			if err != nil {
				var re *refusedError
				if errors.As(err, &re) {
					refused++
					fmt.Fprintf(e.stdout, "%s: REFUSED: %v\n", file, re.err)
					continue
				}
				return err
			}
			if err := printIngest(e, res.IngestResult, *asJSON); err != nil {
				return err
			}
			if !*asJSON {
				printSeen(e, pos[0], res.seen)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if refused > 0 {
		return errFailed
	}
	return nil
}

// refusedError is a bundle refused as a whole.
type refusedError struct{ err error }

func (r *refusedError) Error() string { return r.err.Error() }

// imported is what importOne did with one bundle.
type imported struct {
	*store.IngestResult
	seen []store.SeenKey // keys recorded as seen
}

func importOne(e *env, b *store.Backpack, file string) (*imported, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(8)
	refuse := func(err error) (*imported, error) {
		if qerr := b.QuarantineFile(file, err.Error()); qerr != nil {
			return nil, errors.Join(err, qerr)
		}
		return nil, &refusedError{err}
	}
	where := file
	if abs, err := filepath.Abs(file); err == nil {
		where = abs
	}
	var offers []store.SeenOffer
	var res *store.IngestResult
	switch bundles.Sniff(head) {
	case bundles.KindBackpack:
		bd, err := bundles.Decode(br, bundles.Limits{})
		if err != nil {
			return refuse(err)
		}
		if bd.Header.UID != b.UID() {
			return refuse(fmt.Errorf("bundle is for backpack %q, this is %q", bd.Header.UID, b.UID()))
		}
		source := filepath.Base(file) + " from " + bd.Header.SenderKeyID
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
				offers = append(offers, store.SeenOffer{Public: bd.Header.SenderPublicKey, Sender: true})
			}
		case err != nil:
			return refuse(err)
		}
		if res, err = b.Ingest(e.ctx, bd.Events, source); err != nil {
			return nil, err
		}
	case bundles.KindReference:
		rb, err := bundles.DecodeReference(br, bundles.Limits{})
		if err != nil {
			return refuse(err)
		}
		if res, err = b.Ingest(e.ctx, rb.Events, filepath.Base(file)+" (provara_delta_v1)"); err != nil {
			return nil, err
		}
		for _, r := range rb.Rejected {
			res.Rejected = append(res.Rejected, store.HeldEvent{Reason: r.Error()})
		}
		offers = referenceOffers(rb.Keys)
	default:
		return refuse(errors.New("not a bundle (neither a backpack bundle nor a provara_delta_v1 file)"))
	}
	out := &imported{IngestResult: res}
	if len(offers) > 0 {
		seen, err := b.NoteSeenKeys(offers, where)
		if err != nil {
			return nil, err
		}
		out.seen = seen
	}
	return out, nil
}

// referenceOffers are the well-formed keys of a provara_delta_v1 header:
// entries whose public_key_b64 is a 32-byte key and whose key_id, if
// present, is that key's id. Untrusted: only recorded as seen.
func referenceOffers(keys canon.Value) []store.SeenOffer {
	var out []store.SeenOffer
	for _, k := range keys.Elems() {
		pub, err := base64.StdEncoding.DecodeString(k.Field("public_key_b64").Str())
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		if id := k.Field("key_id").Str(); id != "" && id != bplog.KeyID(pub) {
			continue
		}
		out = append(out, store.SeenOffer{Public: pub})
	}
	return out
}

// printSeen says which keys an import recorded as seen, and how to trust
// them.
func printSeen(e *env, dir string, seen []store.SeenKey) {
	for _, k := range seen {
		fmt.Fprintf(e.stdout, "seen untrusted key %s (fingerprint %s), %d events wait for it; compare the fingerprint with its holder, then: backpack trust %s %s\n",
			k.KeyID, k.Fingerprint, k.Waiting, dir, k.KeyID)
	}
}

func writeOut(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// timeNow is the clock of export headers.
var timeNow = time.Now
