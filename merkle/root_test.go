package merkle_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/conformance"
	"github.com/backpack-field/backpack/merkle"
)

func TestRootExtraVectors(t *testing.T) {
	vecs := extraVectors(t).Field("merkle").Elems()
	if len(vecs) == 0 {
		t.Fatal("no merkle vectors")
	}
	for _, v := range vecs {
		n, _ := v.Field("n").Int64()
		t.Run(fmt.Sprint("n=", n), func(t *testing.T) {
			entries := entriesOf(t, v.Field("files"))
			if int64(len(entries)) != n {
				t.Fatalf("%d files, n=%d", len(entries), n)
			}
			want := v.Field("root").Str()
			got, err := merkle.RootOf(entries)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want {
				t.Errorf("RootOf = %s, want %s", got, want)
			}
			// The same from the leaves as the vector stores them.
			var leaves [][]byte
			for _, f := range v.Field("files").Elems() {
				leaves = append(leaves, canon.MustEncode(f))
			}
			if got := merkle.Root(leaves); got.String() != want {
				t.Errorf("Root = %s, want %s", got, want)
			}
		})
	}
}

// TestRootVectorMalformedDigest checks vectors.json merkle_root_01, whose
// second entry has a 63-character sha256 with an uppercase F: the leaf is
// the entry as stored, so the digest must not be normalised.
func TestRootVectorMalformedDigest(t *testing.T) {
	doc, err := canon.Parse(conformance.ReadFile(t, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range doc.Field("vectors").Elems() {
		if v.Field("id").Str() != "merkle_root_01" {
			continue
		}
		found = true
		entries := entriesOf(t, v.Field("input"))
		want := v.Field("expected").Str()
		got, err := merkle.RootOf(entries)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want {
			t.Errorf("root = %s, want %s", got, want)
		}
		if s := entries[1].SHA256; len(s) != 63 {
			t.Fatalf("vector changed: sha256 %q", s)
		}
		// Lowercasing the stored digest must change the root.
		lower := slices.Clone(entries)
		lower[1].SHA256 = "315f5bdb76d078c43b8ac00c33e22f06d20353842d059013e96196a84f33161"
		if r, _ := merkle.RootOf(lower); r.String() == want {
			t.Error("root unchanged after lowercasing the stored digest")
		}
	}
	if !found {
		t.Fatal("merkle_root_01 not found")
	}
}

// naiveRoot is SPEC.md §5.3's pseudo-code, level by level.
func naiveRoot(leaves [][]byte) merkle.Hash {
	if len(leaves) == 0 {
		return sha256.Sum256(nil)
	}
	var level [][32]byte
	for _, l := range leaves {
		level = append(level, sha256.Sum256(l))
	}
	for len(level) > 1 {
		var next [][32]byte
		for i := 0; i < len(level); i += 2 {
			left, right := level[i], level[i]
			if i+1 < len(level) {
				right = level[i+1]
			}
			next = append(next, sha256.Sum256(append(left[:], right[:]...)))
		}
		level = next
	}
	return level[0]
}

func TestBuilderMatchesLevels(t *testing.T) {
	var leaves [][]byte
	var b merkle.Builder
	for n := 0; n <= 300; n++ {
		if n > 0 {
			leaf := []byte(fmt.Sprintf("leaf %d", n))
			leaves = append(leaves, leaf)
			b.Add(leaf)
		}
		want := naiveRoot(leaves)
		// Root may be asked at any point and the builder continues.
		if got := b.Root(); got != want {
			t.Fatalf("n=%d: Builder.Root = %s, want %s", n, got, want)
		}
		if got := merkle.Root(leaves); got != want {
			t.Fatalf("n=%d: Root = %s, want %s", n, got, want)
		}
		if b.Len() != n {
			t.Fatalf("Len = %d, want %d", b.Len(), n)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		n := 300 + rng.IntN(5000)
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = fmt.Appendf(nil, "%d", rng.Uint64())
		}
		if got, want := merkle.Root(leaves), naiveRoot(leaves); got != want {
			t.Fatalf("n=%d: Root = %s, want %s", n, got, want)
		}
	}
}

func TestRootSmallCases(t *testing.T) {
	a, b := []byte("a"), []byte("b")
	ha, hb := merkle.Sum(a), merkle.Sum(b)
	pair := func(l, r merkle.Hash) merkle.Hash { return merkle.Sum(append(l[:], r[:]...)) }
	tests := []struct {
		name   string
		leaves [][]byte
		want   merkle.Hash
	}{
		{"empty", nil, merkle.Sum(nil)},
		{"one leaf is its hash", [][]byte{a}, ha},
		{"two", [][]byte{a, b}, pair(ha, hb)},
		{"three duplicates last", [][]byte{a, b, a}, pair(pair(ha, hb), pair(ha, ha))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := merkle.Root(tt.leaves); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if merkle.EmptyRoot.String() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("EmptyRoot = %s", merkle.EmptyRoot)
	}
}

func TestParseHash(t *testing.T) {
	const good = "adf472c6529d7c6e9fb99c49242896917d053dae4f50e7de477fcdf1f9097370"
	h, err := merkle.ParseHash(good)
	if err != nil || h.String() != good {
		t.Fatalf("ParseHash(%q) = %s, %v", good, h, err)
	}
	for _, bad := range []string{
		"", good[:63], good + "0", "ADF472C6529D7C6E9FB99C49242896917D053DAE4F50E7DE477FCDF1F9097370",
		good[:63] + "g", " " + good[1:], good[:62] + "\n",
	} {
		if _, err := merkle.ParseHash(bad); !errors.Is(err, merkle.ErrBadHash) {
			t.Errorf("ParseHash(%q) error = %v, want ErrBadHash", bad, err)
		}
	}
	text, _ := h.MarshalText()
	var h2 merkle.Hash
	if err := h2.UnmarshalText(text); err != nil || h2 != h {
		t.Errorf("text round trip: %s, %v", h2, err)
	}
	if h.IsZero() || !(merkle.Hash{}).IsZero() {
		t.Error("IsZero")
	}
}

func TestRootOfRefusesDisorder(t *testing.T) {
	e := func(p string) merkle.Entry {
		return merkle.Entry{Path: p, SHA256: merkle.EmptyRoot.String()}
	}
	tests := []struct {
		name    string
		entries []merkle.Entry
	}{
		{"unsorted", []merkle.Entry{e("b"), e("a")}},
		{"duplicate", []merkle.Entry{e("a"), e("a")}},
		{"slash sorts after dash and dot", []merkle.Entry{e("a/x"), e("a-b/x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := merkle.RootOf(tt.entries)
			if !errors.Is(err, merkle.ErrUnsorted) {
				t.Fatalf("RootOf error = %v, want ErrUnsorted", err)
			}
			if _, err := merkle.NewManifest("t", tt.entries); !errors.Is(err, merkle.ErrUnsorted) {
				t.Errorf("NewManifest error = %v, want ErrUnsorted", err)
			}
			// ReferenceRoot sorts a copy (stably) as the reference does.
			sorted := slices.Clone(tt.entries)
			merkle.SortEntries(sorted)
			var leaves [][]byte
			for _, x := range sorted {
				l, err := x.Leaf()
				if err != nil {
					t.Fatal(err)
				}
				leaves = append(leaves, l)
			}
			got, err := merkle.ReferenceRoot(tt.entries)
			if err != nil || got != merkle.Root(leaves) {
				t.Errorf("ReferenceRoot = %s, %v", got, err)
			}
		})
	}
}

func TestSortEntriesPathOrder(t *testing.T) {
	v := extraVectors(t).Field("manifest_path_order")
	var entries []merkle.Entry
	for _, p := range v.Field("input").Elems() {
		entries = append(entries, merkle.Entry{Path: p.Str()})
	}
	merkle.SortEntries(entries)
	var got, want []string
	for _, e := range entries {
		got = append(got, e.Path)
	}
	for _, p := range v.Field("sorted").Elems() {
		want = append(want, p.Str())
	}
	if !slices.Equal(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
	if err := merkle.CheckOrder(entries); err != nil {
		t.Errorf("CheckOrder after sort: %v", err)
	}
}

func TestEntryLeaf(t *testing.T) {
	e := merkle.Entry{Path: "dir/é\n\"q\".txt", SHA256: "x", Size: -3}
	leaf, err := e.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"path":"dir/é\n\"q\".txt","sha256":"x","size":-3}`; string(leaf) != want {
		t.Errorf("leaf %s, want %s", leaf, want)
	}
	e.Extra = []canon.Member{{Key: "mode", Value: canon.IntValue(420)}, {Key: "a", Value: canon.NullValue()}}
	leaf, err = e.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":null,"mode":420,"path":"dir/é\n\"q\".txt","sha256":"x","size":-3}`; string(leaf) != want {
		t.Errorf("leaf with extras %s, want %s", leaf, want)
	}
	e.Extra = []canon.Member{{Key: "size", Value: canon.IntValue(1)}}
	if _, err := e.Leaf(); err == nil {
		t.Error("extra member shadowing size accepted")
	}
	if _, err := (merkle.Entry{Path: "bad\xff"}).Leaf(); err == nil {
		t.Error("invalid UTF-8 path encoded")
	}
}

func TestCheckPath(t *testing.T) {
	for _, p := range []string{"a", "events/events.ndjson", ".hidden/.keep", "a..b/c", "...", "a\\b", "é/ü"} {
		if err := merkle.CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "/etc/passwd", "../x", "a/../../x", "a/..", "..", "./a", "a/./b", "a//b", "a/", "a\x00b", "bad\xff"} {
		var pe *merkle.PathError
		if err := merkle.CheckPath(p); !errors.As(err, &pe) {
			t.Errorf("CheckPath(%q) = %v, want *PathError", p, err)
		}
	}
}
