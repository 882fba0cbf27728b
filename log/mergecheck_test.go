package log_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bplog "github.com/backpack-field/backpack/log"
)

// TestMergeCheck compares MergePlan with orders the reference computed,
// for pairs prepared outside the project. BACKPACK_MERGECHECK_DIR holds one
// directory per pair with local.ndjson, remote.ndjson and ref_order.txt
// (the event_ids of the reference's merge_event_logs(local, remote), one a
// line). Where the orders differ, the reference's must break a link and
// MergePlan's must not.
func TestMergeCheck(t *testing.T) {
	root := os.Getenv("BACKPACK_MERGECHECK_DIR")
	if root == "" {
		t.Skip("BACKPACK_MERGECHECK_DIR not set")
	}
	pairs, err := filepath.Glob(filepath.Join(root, "*", "ref_order.txt"))
	if err != nil || len(pairs) == 0 {
		t.Fatalf("no pairs in %s (%v)", root, err)
	}
	for _, p := range pairs {
		dir := filepath.Dir(p)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			local := fileItems(t, filepath.Join(dir, "local.ndjson"))
			remote := fileItems(t, filepath.Join(dir, "remote.ndjson"))
			want := idLines(t, p)
			order, appendOnly := bplog.MergePlan(local, remote)
			all := append(slices.Clone(local), remote...)
			got := ids(all, order)
			byID := map[string]bplog.OrderItem{}
			for _, it := range all {
				if _, ok := byID[it.ID]; !ok {
					byID[it.ID] = it
				}
			}
			refItems := make([]bplog.OrderItem, len(want))
			for i, id := range want {
				refItems[i] = byID[id]
			}
			refBroken := brokenLinks(refItems, identity(len(refItems)))
			ourBroken := brokenLinks(all, order)
			same := slices.Equal(got, want)
			first := -1
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					first = i
					break
				}
			}
			t.Logf("local %d, remote %d, merged %d: identical=%v appendOnly=%v; links broken: reference %d, ours %d; first difference at %d",
				len(local), len(remote), len(got), same, appendOnly, refBroken, ourBroken, first)
			// The cheap append check, for the replica that was behind.
			held := map[string]bool{}
			var maxKey bplog.OrderItem
			for _, it := range local {
				held[it.ID] = true
				if bplog.CompareKey(it, maxKey) > 0 {
					maxKey = it
				}
			}
			var fresh []bplog.OrderItem
			for _, it := range remote {
				if !held[it.ID] {
					held[it.ID] = true
					fresh = append(fresh, it)
				}
			}
			if ao, ok := bplog.AppendsAfter(maxKey, fresh); ok {
				t.Logf("AppendsAfter: append %d events", len(ao))
				if !appendOnly || !slices.Equal(got[len(local):], ids(fresh, ao)) {
					t.Errorf("AppendsAfter disagrees with MergePlan")
				}
			}
			if ourBroken != 0 {
				t.Errorf("MergePlan breaks %d links", ourBroken)
			}
			if !same && (refBroken == 0 || len(got) != len(want)) {
				t.Errorf("orders differ although the reference's keeps every link")
			}
		})
	}
}

func fileItems(t *testing.T, path string) []bplog.OrderItem {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var items []bplog.OrderItem
	r := bplog.NewReader(f)
	for r.Next() {
		l := r.Line()
		if l.Err != nil {
			t.Fatalf("%s:%d: %v", path, l.Number, l.Err)
		}
		e, err := bplog.Parse(l.Text)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, l.Number, err)
		}
		items = append(items, e.Item())
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return items
}

func idLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if s.Text() != "" {
			out = append(out, s.Text())
		}
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	return out
}
