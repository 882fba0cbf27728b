package log_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	bplog "github.com/backpack-field/backpack/log"
)

// parseDAG reads a small DAG notation into order items. Chains are
// separated by "|", the nodes of a chain by "->". A node is
// NAME [t=TIMESTAMP] [p=PREV]; NAME is also its event_id. A name seen
// before is the same event (its fields come from where it first appears).
// A new node after "->" has the node before it as predecessor; p= names a
// predecessor explicitly, which need not be in the set. So
// "A1 t=01 -> A2 t=03 | A1 -> A3 t=02" is a fork after A1.
func parseDAG(t *testing.T, dag string) []bplog.OrderItem {
	t.Helper()
	var items []bplog.OrderItem
	index := map[string]int{}
	for chain := range strings.SplitSeq(dag, "|") {
		prev := -1
		for node := range strings.SplitSeq(chain, "->") {
			f := strings.Fields(node)
			if len(f) == 0 {
				t.Fatalf("empty node in %q", dag)
			}
			i, ok := index[f[0]]
			if !ok {
				it := bplog.OrderItem{ID: f[0]}
				if prev >= 0 {
					it.Prev, it.HasPrev = items[prev].ID, true
				}
				for _, a := range f[1:] {
					switch {
					case strings.HasPrefix(a, "t="):
						it.Timestamp = a[2:]
					case strings.HasPrefix(a, "p="):
						it.Prev, it.HasPrev = a[2:], true
					default:
						t.Fatalf("bad attribute %q in %q", a, dag)
					}
				}
				i = len(items)
				index[f[0]] = i
				items = append(items, it)
			} else if len(f) > 1 {
				t.Fatalf("%s: attributes only where a node first appears", f[0])
			}
			prev = i
		}
	}
	return items
}

func ids(items []bplog.OrderItem, order []int) []string {
	out := make([]string, len(order))
	for j, i := range order {
		out[j] = items[i].ID
	}
	return out
}

// stableSort is the reference's order (SPEC §8.2): a stable sort by key.
func stableSort(items []bplog.OrderItem) []int {
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return bplog.CompareKey(items[order[a]], items[order[b]]) < 0 })
	return order
}

// brokenLinks counts items placed before a predecessor that is in the set.
func brokenLinks(items []bplog.OrderItem, order []int) int {
	pos := make(map[string]int, len(items))
	for j, i := range order {
		if _, ok := pos[items[i].ID]; !ok {
			pos[items[i].ID] = j
		}
	}
	n := 0
	for j, i := range order {
		if p, ok := pos[items[i].Prev]; ok && items[i].HasPrev && p >= j {
			n++
		}
	}
	return n
}

func TestMergeOrderCases(t *testing.T) {
	const (
		z   = "2026-01-01T00:00:01Z"
		p   = "2026-01-01T00:00:01+00:00"
		p15 = "2026-01-01T00:00:01.5+00:00"
	)
	tests := []struct {
		name, dag, want string
	}{
		{"empty", "", ""},
		{"one chain", "A1 t=01 -> A2 t=02 -> A3 t=03", "A1 A2 A3"},
		{"two actors by time", "A1 t=01 -> A2 t=03 | B1 t=02 -> B2 t=04", "A1 B1 A2 B2"},
		{"equal times by id", "B1 t=01 | A1 t=01 | C1 t=01", "A1 B1 C1"},
		{"no timestamp sorts first", "A1 t=01 | M1", "M1 A1"},
		{"skewed clock keeps the chain", "A1 t=05 -> A2 t=03 | B1 t=04", "B1 A1 A2"},
		{"skew holds back only the chain", "A1 t=05 -> A2 t=01 | B1 t=02 -> B2 t=06", "B1 A1 A2 B2"},
		// '+' < '.' < 'Z': the sort alone would put A2 first.
		{"Z then fraction", "A1 t=" + z + " -> A2 t=" + p15, "A1 A2"},
		{"mixed formats across actors", "A1 t=" + z + " | B1 t=" + p15 + " | C1 t=" + p, "C1 B1 A1"},
		{"equal times follow the chain, not the id", "A3 t=09 -> A2 t=09 -> A1 t=09", "A3 A2 A1"},
		{"fork: both kept, by key", "A1 t=01 -> A2 t=03 | A1 -> A3 t=02", "A1 A3 A2"},
		{"fork of first events", "A1 t=02 | A0 t=03", "A1 A0"},
		{"missing predecessor is ready", "A5 t=09 p=A4 | B1 t=01", "B1 A5"},
		{"descendant of a missing predecessor", "A5 t=09 p=A4 -> A6 t=02 | B1 t=03", "B1 A5 A6"},
		{"cross-actor link honoured", "B1 t=05 | S1 t=01 p=B1", "B1 S1"},
		// Cycles (impossible with real hashes): when nothing is ready, the
		// smallest remaining key is placed as if it were.
		{"self loop", "S t=01 p=S | B t=02", "B S"},
		{"two-cycle", "X t=02 p=Y | Y t=01 p=X | B t=03", "B Y X"},
		{"waiting on a cycle", "C t=00 p=X | X t=02 p=Y | Y t=01 p=X", "C Y X"},
		{"cycle behind a ready chain", "A1 t=05 -> A2 t=06 | X t=01 p=Y | Y t=02 p=X", "A1 A2 X Y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var items []bplog.OrderItem
			if tc.dag != "" {
				items = parseDAG(t, tc.dag)
			}
			got := strings.Join(ids(items, bplog.MergeOrder(items)), " ")
			if got != tc.want {
				t.Errorf("MergeOrder(%s) = %q, want %q", tc.dag, got, tc.want)
			}
			// Input order does not matter.
			rev := slices.Clone(items)
			slices.Reverse(rev)
			if got2 := strings.Join(ids(rev, bplog.MergeOrder(rev)), " "); got2 != got {
				t.Errorf("reversed input gives %q, want %q", got2, got)
			}
		})
	}
}

func TestMergeOrderDuplicates(t *testing.T) {
	// Two copies of A1 (different timestamps, as in an event_id fork) and
	// a child: the child waits for both; copies keep input order on a tie.
	items := []bplog.OrderItem{
		{ID: "A2", Prev: "A1", HasPrev: true, Timestamp: "02"},
		{ID: "A1", Timestamp: "05"},
		{ID: "A1", Timestamp: "01"},
		{ID: "B1", Timestamp: "03"},
		{ID: "B1", Timestamp: "03"},
	}
	if got, want := bplog.MergeOrder(items), []int{2, 3, 4, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("MergeOrder = %v, want %v", got, want)
	}
}

// readItems reads a log's order items from the reference data.
func readItems(t *testing.T, elem ...string) []bplog.OrderItem {
	t.Helper()
	vals, bad := readAll(t, conformance.Path(t, elem...))
	if len(bad) > 0 {
		t.Fatalf("%v: %d bad lines", elem, len(bad))
	}
	return valueItems(t, vals)
}

func valueItems(t *testing.T, vals []canon.Value) []bplog.OrderItem {
	t.Helper()
	items := make([]bplog.OrderItem, len(vals))
	for i, v := range vals {
		e, err := bplog.NewEvent(v)
		if err != nil {
			t.Fatal(err)
		}
		items[i] = e.Item()
	}
	return items
}

func linesItems(t *testing.T, ndjson string) []bplog.OrderItem {
	t.Helper()
	var items []bplog.OrderItem
	for l := range strings.SplitSeq(ndjson, "\n") {
		if l == "" {
			continue
		}
		e, err := bplog.Parse([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, e.Item())
	}
	return items
}

func TestMergeOrderSyncMergeVector(t *testing.T) {
	var doc struct {
		SyncMerge struct {
			Local  string   `json:"local_ndjson"`
			Remote string   `json:"remote_ndjson"`
			Merged []string `json:"merged_event_ids_in_order"`
		} `json:"sync_merge"`
	}
	conformance.DecodeStd(t, &doc, "extra_vectors.json")
	local := linesItems(t, doc.SyncMerge.Local)
	remote := linesItems(t, doc.SyncMerge.Remote)
	order, appendOnly := bplog.MergePlan(local, remote)
	all := append(slices.Clone(local), remote...)
	if got := ids(all, order); !slices.Equal(got, doc.SyncMerge.Merged) {
		t.Errorf("merged order\n got %v\nwant %v", got, doc.SyncMerge.Merged)
	}
	// The local file (alice 00, alice 01, bob 00) is not itself in merge
	// order: bob's first event goes before alice's second.
	if appendOnly {
		t.Errorf("appendOnly = true, want false")
	}
}

func TestMergeOrderSharedBackpacks(t *testing.T) {
	var exp map[string]json.RawMessage
	conformance.DecodeStd(t, &exp, "expected.json")
	ref := readItems(t, "reference_backpack", "events", "events.ndjson")
	demo := readItems(t, "demo_backpack", "events", "events.ndjson")
	// The demo's last three events share the timestamp
	// 2026-02-13T12:00:00Z, and in chain order their ids are 9bef…, 888e…,
	// 5336…: the reference's sort reverses them, breaking demo_user's
	// chain (expected.json reports it broken). MergeOrder keeps the chain,
	// so it differs from the reference in exactly those three places.
	want := []string{
		"evt_ce544d5420060103bc34dafc",
		"evt_d8ba9e482085b2a0c638dbb8",
		"evt_9beffd1a435a0019c3b2e6a9",
		"evt_888ee6aaded790f321ca43e4",
		"evt_53366158bd8f6d7b2923b028",
		"evt_ab93cdd942790c0b0a07531f",
		"evt_b543eb6334463fc158e343b2",
	}
	for _, dir := range []struct {
		name          string
		local, remote []bplog.OrderItem
	}{
		{"sync_backpacks(local=reference_backpack, remote=demo_backpack)", ref, demo},
		{"sync_backpacks(local=demo_backpack, remote=reference_backpack)", demo, ref},
	} {
		t.Run(dir.name, func(t *testing.T) {
			all := append(slices.Clone(dir.local), dir.remote...)
			var sync struct {
				Order []string `json:"merged_event_ids_in_order"`
			}
			if err := json.Unmarshal(exp[dir.name], &sync); err != nil {
				t.Fatal(err)
			}
			refOrder := sync.Order
			if len(refOrder) != 7 {
				t.Fatalf("expected.json: %d merged ids", len(refOrder))
			}
			// Our model of the reference's sort reproduces its order ...
			if got := ids(all, stableSort(all)); !slices.Equal(got, refOrder) {
				t.Errorf("stable sort = %v, reference %v", got, refOrder)
			}
			if brokenLinks(all, stableSort(all)) == 0 {
				t.Errorf("the reference's order keeps every link; expected.json says demo_user's chain breaks")
			}
			// ... and MergeOrder keeps the chain instead.
			order, _ := bplog.MergePlan(dir.local, dir.remote)
			if got := ids(all, order); !slices.Equal(got, want) {
				t.Errorf("MergePlan order\n got %v\nwant %v", got, want)
			}
			if n := brokenLinks(all, order); n != 0 {
				t.Errorf("%d broken links", n)
			}
		})
	}
	// Each backpack alone is already in merge order.
	for _, items := range [][]bplog.OrderItem{ref, demo} {
		if _, ok := bplog.MergePlan(items, nil); !ok {
			t.Errorf("%s…: file order is not the merge order", items[0].ID)
		}
	}
}

func TestMergePlan(t *testing.T) {
	tests := []struct {
		name               string
		existing, incoming string
		want               string
		appendOnly         bool
	}{
		{"nothing new", "A1 t=01 -> A2 t=02", "", "A1 A2", true},
		{"new events after the head", "A1 t=01 -> A2 t=02", "A3 t=03 p=A2 | B1 t=04", "A1 A2 A3 B1", true},
		{"new event before the head", "A1 t=01 -> A2 t=05", "B1 t=03", "A1 B1 A2", false},
		{"repeats dropped, first copy kept", "A1 t=01 -> A2 t=02", "A2 t=02 p=A1 | B1 t=04 | B1 t=09", "A1 A2 B1", true},
		{"repeat in the existing log", "A1 t=01 | A1 t=01", "B1 t=02", "A1 B1", false},
		{"existing not in merge order", "B1 t=03 | A1 t=01", "", "A1 B1", false},
		{"existing event waits for an incoming one", "A2 t=05 p=A1", "A1 t=01", "A1 A2", false},
		{"empty existing", "", "B1 t=02 | A1 t=01", "A1 B1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ex, in []bplog.OrderItem
			if tc.existing != "" {
				ex = dagOrDup(t, tc.existing)
			}
			if tc.incoming != "" {
				in = dagOrDup(t, tc.incoming)
			}
			order, appendOnly := bplog.MergePlan(ex, in)
			all := append(slices.Clone(ex), in...)
			if got := strings.Join(ids(all, order), " "); got != tc.want || appendOnly != tc.appendOnly {
				t.Errorf("MergePlan = %q, %v; want %q, %v", got, appendOnly, tc.want, tc.appendOnly)
			}
		})
	}
}

// dagOrDup is parseDAG, except that a repeated node with attributes is a
// second copy of that event_id (to write duplicates).
func dagOrDup(t *testing.T, dag string) []bplog.OrderItem {
	t.Helper()
	var items []bplog.OrderItem
	for part := range strings.SplitSeq(dag, "|") {
		items = append(items, parseDAG(t, part)...)
	}
	return items
}

// ---- Property tests ----

// genMode selects what the generator produces.
type genMode int

const (
	genClean       genMode = iota // one timestamp format, clocks move forward
	genSkewed                     // skewed clocks, mixed formats, equal times
	genAdversarial                // links anywhere, cycles possible
)

// genItems makes a random event set: several actors, each with a chain
// that sometimes forks, some first events with a missing predecessor.
// Items come in creation order.
func genItems(r *rand.Rand, n int, mode genMode) []bplog.OrderItem {
	actors := 1 + r.IntN(6)
	skew := make([]int, actors)
	if mode != genClean {
		for a := range skew {
			skew[a] = r.IntN(7) - 3
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	heads := make([][]int, actors) // the events of each actor
	seen := map[string]bool{}
	items := make([]bplog.OrderItem, 0, n)
	clock := 0 // half seconds
	for len(items) < n {
		a := r.IntN(actors)
		var id string
		for id == "" || seen[id] {
			id = fmt.Sprintf("evt_%024x", r.Uint64()&(1<<40-1)|uint64(a)<<44)
		}
		seen[id] = true
		it := bplog.OrderItem{ID: id}
		switch h := heads[a]; {
		case len(h) == 0:
			if r.IntN(8) == 0 {
				it.Prev, it.HasPrev = "evt_missing", true
			}
		case r.IntN(10) == 0:
			it.Prev, it.HasPrev = items[h[r.IntN(len(h))]].ID, true // fork
		default:
			it.Prev, it.HasPrev = items[h[len(h)-1]].ID, true
		}
		if mode == genClean {
			clock += 1 + r.IntN(4)
		} else {
			clock += r.IntN(3)
		}
		ts := clock + 2*skew[a]
		if mode != genClean && r.IntN(12) == 0 {
			ts -= r.IntN(8) // a clock that jumps back
		}
		it.Timestamp = formatTS(r, base, ts, mode)
		if mode == genAdversarial && r.IntN(20) == 0 {
			it.Timestamp = ""
		}
		heads[a] = append(heads[a], len(items))
		items = append(items, it)
	}
	if mode == genAdversarial {
		// Relink some items to any item, itself or a later one included:
		// cycles and self-loops.
		for i := range items {
			if r.IntN(3) == 0 {
				items[i].Prev, items[i].HasPrev = items[r.IntN(len(items))].ID, true
			}
		}
	}
	return items
}

// formatTS writes a time given in half seconds the way some writer would:
// isoformat (+00:00, no fraction on a whole second) in clean mode; also
// "Z" and a short fraction otherwise.
func formatTS(r *rand.Rand, base time.Time, halves int, mode genMode) string {
	tm := base.Add(time.Duration(halves) * 500 * time.Millisecond)
	s := tm.Format("2006-01-02T15:04:05")
	half := tm.Nanosecond() != 0
	zone, frac := "+00:00", ""
	if half {
		frac = ".500000"
	}
	if mode != genClean {
		switch r.IntN(3) {
		case 1:
			zone = "Z"
		case 2:
			if half {
				frac = ".5"
			} else if r.IntN(2) == 0 {
				frac = ".000000"
			}
		}
	}
	return s + frac + zone
}

// propertyStats counts how often each property branch ran.
type propertyStats struct{ sortRespects, appendOK int }

// checkProperties checks MergeOrder and MergePlan on one seeded random set.
func checkProperties(t *testing.T, seed uint64, n int, mode genMode, st *propertyStats) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, uint64(mode)))
	items := genItems(r, n, mode)
	order := bplog.MergeOrder(items)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, n %d, mode %d: %s", seed, n, mode, fmt.Sprintf(format, args...))
	}
	// A permutation of the indices.
	if len(order) != len(items) {
		fail("order has %d items, want %d", len(order), len(items))
	}
	got := make([]bool, len(items))
	for _, i := range order {
		if got[i] {
			fail("index %d twice", i)
		}
		got[i] = true
	}
	if mode != genAdversarial {
		if b := brokenLinks(items, order); b != 0 {
			fail("%d links broken", b)
		}
		sorted := stableSort(items)
		if brokenLinks(items, sorted) == 0 {
			st.sortRespects++
			if !slices.Equal(sorted, order) {
				fail("the stable sort keeps every link but differs from MergeOrder")
			}
		}
	}
	// Any permutation gives the same order.
	want := ids(items, order)
	perm := r.Perm(len(items))
	shuffled := make([]bplog.OrderItem, len(items))
	for j, i := range perm {
		shuffled[j] = items[i]
	}
	if g := ids(shuffled, bplog.MergeOrder(shuffled)); !slices.Equal(g, want) {
		fail("a permutation changes the order")
	}
	if mode == genAdversarial {
		return
	}
	// Merging replicas: subsets of the set, each in merge order.
	byID := make(map[string]bplog.OrderItem, len(items))
	for _, it := range items {
		byID[it.ID] = it
	}
	subset := func() []bplog.OrderItem {
		var s []bplog.OrderItem
		for _, it := range items {
			if r.IntN(10) < 6 {
				s = append(s, it)
			}
		}
		return pick(s, bplog.MergeOrder(s))
	}
	merge := func(a, b []bplog.OrderItem) []bplog.OrderItem {
		order, appendOnly := bplog.MergePlan(a, b)
		all := append(slices.Clone(a), b...)
		m := pick(all, order)
		isPrefix := len(m) >= len(a) && slices.Equal(ids(m[:len(a)], identity(len(a))), ids(a, identity(len(a))))
		if appendOnly != isPrefix {
			fail("appendOnly = %v, but the existing log is a prefix: %v", appendOnly, isPrefix)
		}
		return m
	}
	A, B, C := subset(), subset(), subset()
	key := func(s []bplog.OrderItem) string { return strings.Join(ids(s, identity(len(s))), " ") }
	union := func(ss ...[]bplog.OrderItem) string {
		var all []bplog.OrderItem
		in := map[string]bool{}
		for _, s := range ss {
			for _, it := range s {
				if !in[it.ID] {
					in[it.ID] = true
					all = append(all, it)
				}
			}
		}
		return key(pick(all, bplog.MergeOrder(all)))
	}
	if key(merge(A, B)) != key(merge(B, A)) || key(merge(A, B)) != union(A, B) {
		fail("merge is not commutative")
	}
	if key(merge(merge(A, B), C)) != key(merge(A, merge(B, C))) || key(merge(merge(A, B), C)) != union(A, B, C) {
		fail("merge is not associative")
	}
	if m := merge(A, A); key(m) != key(A) {
		fail("merge is not idempotent")
	}
	// Append check on a prefix split: the first k created events, then
	// the rest.
	k := r.IntN(len(items) + 1)
	ex := pick(items[:k], bplog.MergeOrder(items[:k]))
	in := items[k:]
	var maxKey bplog.OrderItem
	for _, it := range ex {
		if bplog.CompareKey(it, maxKey) > 0 {
			maxKey = it
		}
	}
	if ao, ok := bplog.AppendsAfter(maxKey, in); ok {
		st.appendOK++
		order, appendOnly := bplog.MergePlan(ex, in)
		all := append(slices.Clone(ex), in...)
		want := append(ids(ex, identity(len(ex))), ids(in, ao)...)
		if !appendOnly || !slices.Equal(ids(all, order), want) {
			fail("AppendsAfter says append, MergePlan disagrees")
		}
	}
}

func pick(items []bplog.OrderItem, order []int) []bplog.OrderItem {
	out := make([]bplog.OrderItem, len(order))
	for j, i := range order {
		out[j] = items[i]
	}
	return out
}

func identity(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestMergeOrderProperties(t *testing.T) {
	var st propertyStats
	runs := 0
	for _, mode := range []genMode{genClean, genSkewed, genAdversarial} {
		for seed := uint64(1); seed <= 150; seed++ {
			n := 1 + int(seed*7%120)
			checkProperties(t, seed, n, mode, &st)
			runs++
		}
	}
	t.Logf("%d sets; the stable sort kept every link in %d, AppendsAfter applied in %d", runs, st.sortRespects, st.appendOK)
	if st.sortRespects < 100 || st.appendOK < 50 {
		t.Errorf("properties rarely exercised: %+v", st)
	}
}

// benchItems is a log of n events by 16 actors with forward clocks.
func benchItems(n int) []bplog.OrderItem {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	items := make([]bplog.OrderItem, n)
	heads := make([]string, 16)
	for i := range items {
		a := r.IntN(len(heads))
		id := fmt.Sprintf("evt_%024x", r.Uint64())
		items[i] = bplog.OrderItem{
			ID:        id,
			Prev:      heads[a],
			HasPrev:   heads[a] != "",
			Timestamp: base.Add(time.Duration(i) * 1234 * time.Microsecond).Format("2006-01-02T15:04:05.000000-07:00"),
		}
		heads[a] = id
	}
	return items
}

// BenchmarkMergeOrder sorts logs in file order (the usual case: a log
// plus a delta) and shuffled (every access a cache miss).
func BenchmarkMergeOrder(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		items := benchItems(n)
		shuffled := slices.Clone(items)
		r := rand.New(rand.NewPCG(3, 4))
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, in := range []struct {
			name  string
			items []bplog.OrderItem
		}{{"file", items}, {"shuffled", shuffled}} {
			b.Run(fmt.Sprintf("%s/%d", in.name, n), func(b *testing.B) {
				for b.Loop() {
					bplog.MergeOrder(in.items)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/event")
			})
		}
	}
}
