package cli

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/check"
)

func runVerify(e *env, args []string) error {
	fs := newFlags(e, "verify", "DIR [flags]", `Check everything in DIR, read-only: every log line (parse, envelope,
event_id rule, Ed25519 signature against identity/keys.json), every actor's
hash chain and any fork, the manifest against the files on disk,
merkle_root.txt, manifest.sig, the state cache and checkpoints against a
full replay. Problems are listed with line numbers, actors and event ids.
Exit status 1 when anything fails; warnings alone exit 0.

A fork (an actor's history split) fails verification unless a device has
recorded it with a signed com.provara.sync.conflict event (backpack does
when it imports one): then both sides are known evidence, and it is a
warning. A manifest.sig that is missing, or valid but over an older Merkle root, is
a warning (the reference re-signs it only at bootstrap, so backpacks that
reference tools wrote to carry one); --strict makes it a failure.`)
	asJSON := fs.Bool("json", false, "print the full report as JSON")
	quiet := fs.Bool("q", false, "print only the verdict line")
	strict := fs.Bool("strict", false, "fail when the current Merkle root is not signed (manifest.sig missing or stale)")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	rep, err := check.Run(e.ctx, dir, check.Options{Strict: *strict})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		if !*quiet {
			for _, f := range rep.Findings {
				fmt.Fprintln(e.stdout, f.String())
			}
			fmt.Fprintf(e.stdout, "events %d (lines %d), actors %d; signatures %d valid, %d invalid, %d unsigned; ids %d profile, %d legacy, %d wrong\n",
				rep.Events, rep.Lines, len(rep.Actors), rep.Signatures.Valid, rep.Signatures.Invalid, rep.Signatures.Unsigned,
				rep.IDRules["profile"], rep.IDRules["legacy"], rep.IDRules["mismatch"])
			fmt.Fprintf(e.stdout, "forks %d; manifest.sig %s; state cache %s; checkpoints %d\n", len(rep.Forks), rep.ManifestSig, rep.StateCache, len(rep.Checkpoints))
			fmt.Fprintf(e.stdout, "state hash %s\nmerkle root %s\n", rep.StateHash, rep.MerkleRoot)
		}
		verdict := "OK"
		if !rep.OK {
			verdict = "FAILED"
		}
		fmt.Fprintf(e.stdout, "%s: %d failures, %d warnings\n", verdict, rep.Failures, rep.Warnings)
	}
	if !rep.OK {
		return errFailed
	}
	return nil
}
