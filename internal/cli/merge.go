package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

func runMerge(e *env, args []string) error {
	fs := newFlags(e, "merge", "LOCAL REMOTE [flags]", `Bring REMOTE's events into LOCAL (REMOTE is only read). Every event is
checked as an import checks it: events by keys LOCAL does not trust wait in
LOCAL's quarantine, events whose predecessor LOCAL lacks wait as pending,
forks are kept as evidence. The result is in the documented merge order;
manifest, Merkle root, manifest.sig and state are rebuilt.`)
	key := fs.String("key", "", "device key file of LOCAL")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	local, remote, err := twoPositionals(fs, args, "LOCAL and REMOTE")
	if err != nil {
		return err
	}
	f, err := openLog(remote)
	if err != nil {
		return err
	}
	defer f.Close()
	// REMOTE is read while LOCAL opens.
	type read struct {
		lines *store.Prepared
		err   error
	}
	remoteLines := make(chan read, 1)
	go func() {
		t0 := time.Now()
		var p *store.Prepared
		data, err := readAll(f)
		if err == nil {
			p, err = store.PrepareLog(data)
		}
		e.logger().Debug("merge: read the remote log", "bytes", len(data), "took", time.Since(t0))
		remoteLines <- read{p, err}
	}()
	var res *store.IngestResult
	err = withWriter(e, local, *key, func(b *store.Backpack) (err error) {
		r := <-remoteLines
		if r.err != nil {
			return fmt.Errorf("%s: %w", remote, r.err)
		}
		res, err = b.IngestPrepared(e.ctx, r.lines, "merge:"+remote)
		return err
	}, func(o *store.Options) {
		// A merge that reorders the log replays the state from a
		// snapshot: LOCAL's state is decoded only if it is needed.
		o.DeferState = true
		// LOCAL's log, read by the open, is compared with REMOTE's and
		// rewritten from memory.
		o.KeepLog = true
	})
	if err != nil {
		return err
	}
	return printIngest(e, res, *asJSON)
}

// readAll reads the whole of f.
func readAll(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return io.ReadAll(f)
	}
	data := make([]byte, st.Size())
	n, err := io.ReadFull(f, data)
	if err == io.ErrUnexpectedEOF {
		err = nil // it shrank meanwhile: what was there
	}
	return data[:n], err
}

func printIngest(e *env, res *store.IngestResult, asJSON bool) error {
	if asJSON {
		return writeJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "%s: %d events received, %d applied, %d already held", res.Source, res.Received, len(res.Applied), res.Duplicates)
	if res.Rewrote {
		fmt.Fprint(e.stdout, " (log reordered into the merge order)")
	}
	fmt.Fprintln(e.stdout)
	for _, f := range res.Forks {
		if f.Kind == bplog.ForkSameID {
			fmt.Fprintf(e.stdout, "FORK actor %q: event %s arrived with different content; both kept as evidence\n", f.Actor, f.Prev)
			continue
		}
		ids := make([]string, len(f.Events))
		for i, ev := range f.Events {
			ids[i] = ev.EventID
		}
		fmt.Fprintf(e.stdout, "FORK actor %q: %s both follow %s; both kept (see backpack forks)\n", f.Actor, strings.Join(ids, " and "), f.Prev)
	}
	label := "quarantined"
	if res.Source == "quarantine retry" {
		label = "still quarantined"
	}
	for _, h := range res.Quarantined {
		fmt.Fprintf(e.stdout, "%s %s (actor %s, key %s): %s\n", label, h.EventID, h.Actor, h.KeyID, h.Reason)
	}
	for _, h := range res.Rejected {
		fmt.Fprintf(e.stdout, "rejected %s: %s\n", h.EventID, h.Reason)
	}
	for _, a := range sortedKeys(res.Missing) {
		fmt.Fprintf(e.stdout, "pending: %s\n", res.Missing[a].String(a))
	}
	return nil
}
