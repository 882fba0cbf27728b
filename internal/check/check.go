// Package check verifies a backpack completely and read-only: every line
// of the log (parse, envelope, event_id rule, signature against
// identity/keys.json), every actor's chain and any fork, the manifest
// against the disk, merkle_root.txt, manifest.sig, the state cache and
// checkpoints against a full replay. It reports each problem precisely
// (line, actor, event, what is wrong) and changes nothing.
package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/backpack-field/backpack/internal/scan"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/reducer"
)

// Severity of a finding.
const (
	Fail = "fail"
	Warn = "warn"
)

// Finding is one problem.
type Finding struct {
	Severity string `json:"severity"`
	Area     string `json:"area"` // log, id, signature, chain, fork, manifest, merkle, manifest_sig, state_cache, checkpoint, identity
	Line     int    `json:"line,omitempty"`
	EventID  string `json:"event_id,omitempty"`
	Actor    string `json:"actor,omitempty"`
	Path     string `json:"path,omitempty"`
	Message  string `json:"message"`
}

func (f Finding) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", strings.ToUpper(f.Severity), f.Area)
	if f.Line > 0 {
		fmt.Fprintf(&b, " line %d", f.Line)
	}
	if f.Actor != "" && f.Area != "chain" && f.Area != "fork" {
		fmt.Fprintf(&b, " actor %q", f.Actor)
	}
	if f.EventID != "" && f.Area == "signature" {
		fmt.Fprintf(&b, " %s", f.EventID)
	}
	if f.Path != "" {
		fmt.Fprintf(&b, " %s", f.Path)
	}
	fmt.Fprintf(&b, ": %s", f.Message)
	return b.String()
}

// Report is the outcome of Run.
type Report struct {
	Dir         string             `json:"dir"`
	Lines       int                `json:"lines"`
	Events      int                `json:"events"`
	IDRules     map[string]int     `json:"id_rules"`
	Signatures  SigCounts          `json:"signatures"`
	Actors      []bplog.ActorChain `json:"actors"`
	Forks       []bplog.Fork       `json:"forks"`
	StateHash   string             `json:"state_hash,omitempty"`
	MerkleRoot  string             `json:"merkle_root,omitempty"`
	ManifestSig string             `json:"manifest_sig"`
	StateCache  string             `json:"state_cache"`
	Checkpoints []string           `json:"checkpoints,omitempty"`
	Findings    []Finding          `json:"findings"`
	OK          bool               `json:"ok"`
	Failures    int                `json:"failures"`
	Warnings    int                `json:"warnings"`
}

// SigCounts counts signature results.
type SigCounts struct {
	Valid    int `json:"valid"`
	Invalid  int `json:"invalid"`
	Unsigned int `json:"unsigned"`
}

// maxFindingsPerArea keeps a report of a badly broken log readable; the
// counts stay exact.
const maxFindingsPerArea = 200

type checker struct {
	r *Report
	// conflicts maps actor + "\x00" + fork point to the id of a signed
	// com.provara.sync.conflict event that records that fork.
	conflicts map[string]string
	strict    bool
	reg       *bplog.Registry
	perArea   map[string]int
}

func (c *checker) add(f Finding) {
	if f.Severity == Fail {
		c.r.Failures++
	} else {
		c.r.Warnings++
	}
	c.perArea[f.Area]++
	if c.perArea[f.Area] <= maxFindingsPerArea {
		c.r.Findings = append(c.r.Findings, f)
	} else if c.perArea[f.Area] == maxFindingsPerArea+1 {
		c.r.Findings = append(c.r.Findings, Finding{Severity: f.Severity, Area: f.Area, Message: "further findings of this kind not listed (see counts)"})
	}
}

// Options configures Run.
type Options struct {
	Workers int
	// Strict makes an unsigned or stale manifest.sig a failure. By
	// default it is a warning: the reference re-signs manifest.sig only
	// at bootstrap, so every backpack the reference wrote to since has a
	// valid signature over an older Merkle root.
	Strict bool
}

// Run verifies the backpack in dir.
func Run(ctx context.Context, dir string, opts Options) (*Report, error) {
	r := &Report{Dir: dir, IDRules: map[string]int{}}
	c := &checker{r: r, perArea: map[string]int{}, strict: opts.Strict, conflicts: map[string]string{}}
	if _, err := store.ReadGenesis(dir); err != nil {
		return nil, err
	}
	keys, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(store.KeysPath)))
	if err != nil {
		return nil, err
	}
	reg, err := bplog.ParseRegistry(keys)
	if err != nil {
		return nil, err
	}
	c.reg = reg
	if err := c.log(ctx, dir, reg); err != nil {
		return nil, err
	}
	root := c.manifest(dir)
	c.manifestSig(dir, reg, root)
	r.OK = r.Failures == 0
	return r, nil
}

// pendingRevoked is an event whose signature is valid but whose key is
// revoked; whether it came before the revocation is decided at the end.
type pendingRevoked struct {
	line   int
	id     string
	actor  string
	key    string
	revEvt string
}

func (c *checker) log(ctx context.Context, dir string, reg *bplog.Registry) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(store.EventsPath)))
	if err != nil {
		return err
	}
	defer f.Close()

	state := reducer.New()
	chains := bplog.NewChains()
	var revoked []pendingRevoked
	cache := loadCacheProbe(dir, c)
	cps := loadCheckpoints(dir, reg, c)

	err = scan.Run(ctx, f, scan.Options{Workers: 0, Registry: reg}, func(it *scan.Item) error {
		c.r.Lines = it.Number
		if it.Err != nil {
			msg := "unusable line: " + it.Err.Error()
			if !it.Terminated {
				msg = "incomplete last line without a newline (an interrupted write? the next backpack write moves it to the quarantine): " + it.Err.Error()
			}
			c.add(Finding{Severity: Fail, Area: "log", Line: it.Number, Message: msg})
			return nil
		}
		state.Apply(it.Value)
		if it.Event == nil {
			c.add(Finding{Severity: Fail, Area: "log", Line: it.Number, Message: "line is JSON but not an object (" + it.Value.Kind().String() + "); not an event"})
		} else {
			c.event(it, chains, &revoked)
		}
		cache.at(it.End, state)
		cps.at(int64(state.EventCount()), it.End, state)
		return nil
	})
	if err != nil {
		return err
	}
	c.r.Events = int(state.EventCount())
	for _, p := range revoked {
		msg := fmt.Sprintf("signed by revoked key %s", p.key)
		sev := Fail
		if l, ok := chains.Line(p.revEvt); ok && l > p.line {
			sev, msg = Warn, msg+fmt.Sprintf(" (signature valid; signed before the revocation event %s at line %d; the reference rejects it)", p.revEvt, l)
		} else {
			msg += " (signature valid, but the key was revoked before this event or the revocation event is unknown)"
		}
		if sev == Fail {
			c.r.Signatures.Invalid++
		} else {
			c.r.Signatures.Valid++
		}
		c.add(Finding{Severity: sev, Area: "signature", Line: p.line, EventID: p.id, Actor: p.actor, Message: msg})
	}
	rep := chains.Finish()
	c.r.Actors = rep.Actors
	c.r.Forks = rep.Forks
	for _, b := range rep.Breaks {
		c.add(Finding{Severity: Fail, Area: "chain", Line: b.Line, EventID: b.EventID, Actor: b.Actor, Message: b.String()})
	}
	for _, fk := range rep.Forks {
		line := 0
		if len(fk.Events) > 0 {
			line = fk.Events[len(fk.Events)-1].Line
		}
		// A fork a device has recorded with a signed conflict event is
		// known evidence, kept on purpose: a warning. An unrecorded fork
		// fails.
		if rec, ok := c.conflicts[fk.Actor+"\x00"+fk.Prev]; ok {
			c.add(Finding{Severity: Warn, Area: "fork", Line: line, Actor: fk.Actor, Message: fk.String() + fmt.Sprintf("; recorded by conflict event %s (both sides kept as evidence)", rec)})
			continue
		}
		c.add(Finding{Severity: Fail, Area: "fork", Line: line, Actor: fk.Actor, Message: fk.String()})
	}
	for _, d := range rep.Duplicates {
		c.add(Finding{Severity: Warn, Area: "log", Line: d.Lines[len(d.Lines)-1], EventID: d.EventID, Message: fmt.Sprintf("event %s repeated with identical content on lines %v", d.EventID, d.Lines)})
	}
	if sh, err := state.StateHash(); err != nil {
		c.add(Finding{Severity: Fail, Area: "state", Message: "state cannot be hashed: " + err.Error()})
	} else {
		c.r.StateHash = sh
	}
	cache.finish()
	cps.finish()
	return nil
}

func (c *checker) event(it *scan.Item, chains *bplog.Chains, revoked *[]pendingRevoked) {
	if e := it.Event; e != nil && e.Type == store.ConflictType && it.SigErr == nil {
		p := e.Value.Field("payload")
		c.conflicts[p.Field("actor_id").Str()+"\x00"+p.Field("fork_point_id").Str()] = e.ID
	}
	e := it.Event
	if it.EventErr != nil {
		c.add(Finding{Severity: Fail, Area: "log", Line: it.Number, EventID: e.ID, Actor: e.Actor, Message: "not a usable event: " + it.EventErr.Error()})
		return
	}
	if it.EncodeErr != nil {
		c.add(Finding{Severity: Fail, Area: "log", Line: it.Number, EventID: e.ID, Actor: e.Actor, Message: "event cannot be canonicalised (so it cannot be hashed or verified): " + it.EncodeErr.Error()})
		return
	}
	if !it.Canonical {
		c.add(Finding{Severity: Warn, Area: "log", Line: it.Number, EventID: e.ID, Message: "line is not in canonical JSON form (the reference writes canonical lines)"})
	}
	c.r.IDRules[it.IDRule.String()]++
	switch it.IDRule {
	case bplog.IDMismatch:
		c.add(Finding{Severity: Fail, Area: "id", Line: it.Number, EventID: e.ID, Actor: e.Actor, Message: fmt.Sprintf("event_id %s does not match the event's content (expected %s)", e.ID, it.WantID)})
	case bplog.IDLegacy:
		if c.r.IDRules["legacy"] == 1 {
			c.add(Finding{Severity: Warn, Area: "id", Line: it.Number, EventID: e.ID, Message: "event_id follows the reference's legacy rule (hashed without actor_key_id); accepted. Further legacy ids are only counted."})
		}
	}
	switch {
	case it.SigErr == nil:
		c.r.Signatures.Valid++
	case errors.Is(it.SigErr, bplog.ErrNoSignature):
		c.r.Signatures.Unsigned++
		c.add(Finding{Severity: Fail, Area: "signature", Line: it.Number, EventID: e.ID, Actor: e.Actor, Message: "event is not signed"})
	case errors.Is(it.SigErr, bplog.ErrRevokedKey):
		rev := ""
		if k, ok := c.reg.Key(e.KeyID); ok {
			rev = k.RevocationEventID
		}
		*revoked = append(*revoked, pendingRevoked{line: it.Number, id: e.ID, actor: e.Actor, key: e.KeyID, revEvt: rev})
	default:
		c.r.Signatures.Invalid++
		msg := it.SigErr.Error()
		if errors.Is(it.SigErr, bplog.ErrUnknownKey) {
			msg = fmt.Sprintf("signed by key %s, which identity/keys.json does not list", e.KeyID)
		} else if errors.Is(it.SigErr, bplog.ErrBadSignature) {
			msg = fmt.Sprintf("signature does not verify with key %s (the event or its signature was altered)", e.KeyID)
		}
		c.add(Finding{Severity: Fail, Area: "signature", Line: it.Number, EventID: e.ID, Actor: e.Actor, Message: msg})
	}
	chains.Add(e, it.Number, it.Hash)
}
