package store

import (
	"context"
	"os"

	"github.com/backpack-field/backpack/internal/scan"
	bplog "github.com/backpack-field/backpack/log"
)

// Delta returns, in log order, the events a replica holding since lacks:
// for each actor, the events after the one since names as its head, and
// all of the actor's events when since does not know the actor or names a
// head this log does not hold at that count. The last case is the
// receiver being ahead on the actor (normally its own), or a fork: a
// frontier cannot tell them apart, so the whole chain is sent (duplicates
// cost bytes, a missing event would cost convergence). A nil since means
// everything. It never depends on file positions, so events merged in
// from peers are included (the reference's --since misses them).
func (b *Backpack) Delta(ctx context.Context, since bplog.Frontier) ([][]byte, error) {
	f, err := os.Open(b.path(EventsPath))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type ev struct {
		actor string
		line  []byte
	}
	var all []ev
	pos := map[string]int{}   // actor -> events of the actor seen so far
	cut := map[string]int{}   // actor -> how many of its events the receiver holds
	seen := map[string]bool{} // dedup by id
	err = scan.Run(ctx, f, scan.Options{Hashes: true}, func(it *scan.Item) error {
		e := it.Event
		if e == nil || it.EventErr != nil || it.EncodeErr != nil || seen[e.ID] {
			return nil
		}
		seen[e.ID] = true
		full, _, _, err := e.Encodings()
		if err != nil {
			return nil
		}
		pos[e.Actor]++
		if h, ok := since[e.Actor]; ok && h.Head == e.ID && int64(pos[e.Actor]) == h.Count {
			cut[e.Actor] = pos[e.Actor]
		}
		all = append(all, ev{e.Actor, full})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	n := map[string]int{}
	for _, e := range all {
		n[e.actor]++
		if n[e.actor] > cut[e.actor] {
			out = append(out, e.line)
		}
	}
	return out, nil
}
