package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
)

func runStatus(e *env, args []string) error {
	fs := newFlags(e, "status", "DIR [--json]", `Show the sync status of the backpack in DIR: asked of the running agent
(`+"`backpack agent`"+`) over its socket, or, with no agent running, built from
the backpack and what the last agent recorded (and said so). Exit 0.`)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	key := fs.String("key", "", "device key file")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	g, err := store.ReadGenesis(dir)
	if err != nil {
		return err
	}
	dev, err := store.DeviceDir(g.UID, dir)
	if err != nil {
		return err
	}
	s, err := agent.Query(e.ctx, agent.SocketPath(dev), "status")
	if errors.Is(err, status.ErrNoAgent) || (err == nil && s == nil) {
		s, err = agent.OfflineStatus(e.ctx, dir, *key)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, s)
	}
	printStatus(e, s)
	return nil
}

func printStatus(e *env, s *status.Status) {
	w := e.stdout
	fmt.Fprintf(w, "%s\n", s.Verdict)
	if s.Agent.Running {
		fmt.Fprintf(w, "agent       running, pid %d, since %s, %d passes\n", s.Agent.PID, s.Agent.StartedAt.Format("2006-01-02 15:04:05Z07:00"), s.Agent.Passes)
	} else {
		fmt.Fprintln(w, "agent       not running (status built from the backpack and the last agent's records)")
	}
	if p := s.Agent.Progress; p != nil {
		fmt.Fprintf(w, "importing   %s: %s, %d of %d events\n", p.Source, p.Phase, p.Done, p.Total)
	}
	fmt.Fprintf(w, "backpack    %s  %s\n", s.Backpack.UID, s.Backpack.Dir)
	fmt.Fprintf(w, "            %d events, %d actors, state %s, merkle root %s\n", s.Backpack.Events, s.Backpack.Actors, shortID(s.Backpack.StateHash), shortID(s.Backpack.MerkleRoot))
	fmt.Fprintf(w, "device      %s (%s)\n", s.Device.KeyID, s.Device.Actor)
	for _, f := range s.Folders {
		fmt.Fprintf(w, "folder      %s  [%s", f.Path, f.Mode)
		if f.FSType != "" {
			fmt.Fprintf(w, ", %s", f.FSType)
		}
		fmt.Fprint(w, "]")
		if f.Reason != "" {
			fmt.Fprintf(w, " %s", f.Reason)
		}
		if f.LastError != "" {
			fmt.Fprintf(w, "  error: %s", f.LastError)
		}
		fmt.Fprintln(w)
	}
	for _, p := range s.Peers {
		trust := "trusted"
		if !p.Trusted {
			trust = "NOT trusted"
		}
		fmt.Fprintf(w, "peer        %s (%s) via %s, %s, last contact %s: they lack %d, we lack %d, bundles in %d out %d\n",
			p.KeyID, p.Actor, p.Folder, trust, p.LastContact, p.TheyLack, p.WeLack, p.BundlesIn, p.BundlesOut)
		if p.LastError != "" {
			fmt.Fprintf(w, "            error: %s\n", p.LastError)
		}
	}
	fmt.Fprintf(w, "held        %d forks, %d quarantined, %d pending\n", s.Held.Forks, s.Held.Quarantine, s.Held.Pending)
	for _, n := range s.Held.Needs {
		fmt.Fprintf(w, "            %s\n", n)
	}
	t := s.Throughput
	fmt.Fprintf(w, "moved       in %d events / %d bundles, out %d events / %d bundles (last 5 min: %.1f in, %.1f out per min)\n",
		t.EventsIn, t.BundlesIn, t.EventsOut, t.BundlesOut, t.EventsInPerMin, t.EventsOutPerMin)
	if len(s.Errors) > 0 {
		fmt.Fprintln(w, "recent errors:")
		for _, er := range s.Errors {
			fmt.Fprintf(w, "  %s  %s: %s\n", er.At.Format("15:04:05"), er.Where, strings.TrimSpace(er.Message))
		}
	}
}
