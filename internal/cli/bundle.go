package cli

import (
	"bytes"
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
			res, err := b.ImportBundle(e.ctx, file)
			if err != nil {
				if re, ok := errors.AsType[*store.RefusedError](err); ok {
					refused++
					fmt.Fprintf(e.stdout, "%s: REFUSED: %v\n", file, re.Err)
					continue
				}
				return err
			}
			if err := printIngest(e, res.IngestResult, *asJSON); err != nil {
				return err
			}
			if !*asJSON {
				printSeen(e, pos[0], res.Seen)
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
