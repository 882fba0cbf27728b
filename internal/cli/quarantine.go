package cli

import (
	"fmt"
	"strings"

	"github.com/backpack-field/backpack/internal/store"
)

func runQuarantine(e *env, args []string) error {
	fs := newFlags(e, "quarantine", "DIR [list | retry | drop [--all] [--pending] EVENT_ID...]", `What this device holds back from DIR's log, and why: events signed by keys
DIR does not trust, invalid events, and events waiting for a missing
predecessor (pending). Held events live outside the backpack, in the
device's state directory.
  list   show them (the default)
  retry  run quarantined events through the import checks again (after
         trusting a key); those that now apply leave the quarantine
  drop   delete the named events (or --all) from the quarantine, or from
         the pending set with --pending`)
	key := fs.String("key", "", "device key file")
	all := fs.Bool("all", false, "drop: every held event")
	pendingFlag := fs.Bool("pending", false, "drop: from the pending set instead of the quarantine")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		fs.usage(false)
		return usagef("need DIR")
	}
	dir, verb := pos[0], "list"
	if len(pos) > 1 {
		verb = pos[1]
	}
	switch verb {
	case "list":
		b, err := store.Open(e.ctx, dir, store.Options{ReadOnly: true, Logger: e.logger()})
		if err != nil {
			return err
		}
		defer b.Close()
		q, err := b.Held("quarantine")
		if err != nil {
			return err
		}
		p, err := b.Held("pending")
		if err != nil {
			return err
		}
		keys, err := waitingKeys(b)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{"quarantine": nonNil(q), "pending": nonNil(p), "untrusted_keys": keys})
		}
		if len(q)+len(p) == 0 {
			fmt.Fprintln(e.stdout, "nothing held")
		}
		for _, h := range q {
			fmt.Fprintf(e.stdout, "quarantined %s actor %q key %s from %s: %s\n", orDash(h.EventID), h.Actor, orDash(h.KeyID), orDash(h.Source), h.Reason)
		}
		for _, h := range p {
			fmt.Fprintf(e.stdout, "pending     %s actor %q from %s: %s\n", h.EventID, h.Actor, orDash(h.Source), h.Reason)
		}
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "untrusted key %s  fingerprint %s  %d events wait; ", k.KeyID, k.Fingerprint, k.Waiting)
			if k.Seen {
				fmt.Fprintf(e.stdout, "seen in %s; after comparing the fingerprint: backpack trust %s %s\n", strings.Join(k.Sources, ", "), dir, k.KeyID)
			} else {
				fmt.Fprintf(e.stdout, "public key not seen in any bundle; trust it with its holder's identity/keys.json: backpack trust %s FILE\n", dir)
			}
		}
		return nil
	case "retry":
		var res *store.IngestResult
		err := withWriter(e, dir, *key, func(b *store.Backpack) (err error) {
			res, err = b.RetryQuarantine(e.ctx)
			return err
		})
		if err != nil {
			return err
		}
		return printIngest(e, res, *asJSON)
	case "drop":
		if !*all && len(pos) < 3 {
			return usagef("drop needs event ids or --all")
		}
		kind := "quarantine"
		if *pendingFlag {
			kind = "pending"
		}
		var n int
		err := withWriter(e, dir, *key, func(b *store.Backpack) (err error) {
			n, err = b.DropHeld(kind, pos[2:], *all)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "dropped %d events from the %s\n", n, kind)
		return nil
	}
	return usagef("unknown quarantine action %q (list, retry, drop)", verb)
}

// waitingKey is an untrusted key that quarantined events wait for.
type waitingKey struct {
	KeyID       string `json:"key_id"`
	Fingerprint string `json:"fingerprint"`
	Waiting     int    `json:"waiting_events"`
	// Seen: a bundle carried its public key, so `trust DIR KEYID` works.
	Seen    bool     `json:"trust_by_id"`
	Sources []string `json:"seen_in,omitempty"`
}

// waitingKeys lists the untrusted keys that quarantined events wait for,
// by key id, and whether each can be trusted by its id.
func waitingKeys(b *store.Backpack) ([]waitingKey, error) {
	waiting, err := b.UntrustedWaiting()
	if err != nil {
		return nil, err
	}
	out := []waitingKey{}
	for _, id := range sortedKeys(waiting) {
		k := waitingKey{KeyID: id, Fingerprint: store.Fingerprint(id), Waiting: waiting[id]}
		if store.IsKeyID(id) {
			if s, err := b.SeenKey(id); err == nil {
				k.Seen, k.Sources = true, s.Sources
			}
		}
		out = append(out, k)
	}
	return out, nil
}

func nonNil(h []store.HeldEvent) []store.HeldEvent {
	if h == nil {
		return []store.HeldEvent{}
	}
	return h
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
