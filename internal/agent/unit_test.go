package agent

import (
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bplog "github.com/backpack-field/backpack/log"
)

func testKey(t *testing.T) bplog.PrivateKey {
	t.Helper()
	k, err := bplog.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestFrontierSignVerify(t *testing.T) {
	k := testKey(t)
	dev := &Device{UID: "u1", KeyID: k.ID, Public: k.Public(), Actor: "alpha"}
	pf := PeerFrontier{UID: "u1", KeyID: k.ID, Seq: 3, UpdatedAt: "2026-01-02T03:04:05.000006+00:00",
		Frontier: bplog.Frontier{"alpha": {Head: "evt_1", Count: 2}}}
	data := pf.Sign(k.Key)
	got, err := VerifyFrontier(data, dev)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 3 || got.Frontier["alpha"].Count != 2 {
		t.Errorf("round trip: %+v", got)
	}
	parsed, err := ParseDevice(dev.Encode())
	if err != nil || parsed.KeyID != k.ID || !parsed.Public.Equal(dev.Public) {
		t.Fatalf("device.json round trip: %+v %v", parsed, err)
	}
	t.Run("tampered", func(t *testing.T) {
		bad := []byte(strings.Replace(string(data), `"count":2`, `"count":9`, 1))
		if _, err := VerifyFrontier(bad, dev); err == nil {
			t.Error("a tampered frontier verified")
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		other := testKey(t)
		if _, err := VerifyFrontier(pf.Sign(other.Key), dev); err == nil {
			t.Error("a frontier signed by another key verified")
		}
		odev := &Device{UID: "u1", KeyID: other.ID, Public: other.Public()}
		if _, err := VerifyFrontier(data, odev); err == nil {
			t.Error("a frontier naming another key id verified")
		}
	})
	t.Run("device key mismatch", func(t *testing.T) {
		d := *dev
		d.KeyID = testKey(t).ID
		if _, err := ParseDevice(d.Encode()); err == nil {
			t.Error("device.json whose key does not derive its key_id parsed")
		}
	})
}

func TestLayoutNames(t *testing.T) {
	if got := BackpackDir("/p", "150f6bc8-7d51"); got != filepath.Join("/p", "backpack-150f6bc8-7d51") {
		t.Errorf("BackpackDir: %s", got)
	}
	if got := BackpackDir("/p", "a/b"); !strings.HasPrefix(filepath.Base(got), "backpack-uid-") || len(filepath.Base(got)) != len("backpack-uid-")+24 {
		t.Errorf("unsafe uid: %s", got)
	}
	name := BundleName(42, []byte("hello"))
	if name != "0000000042-2cf24dba5fb0a30e.bpb" {
		t.Errorf("BundleName: %s", name)
	}
	for in, want := range map[string]int64{name: 42, "0000000001-0123456789abcdef.bpb": 1} {
		if seq, ok := ParseBundleName(in); !ok || seq != want {
			t.Errorf("ParseBundleName(%q) = %d, %v", in, seq, ok)
		}
	}
	for _, bad := range []string{".0000000042-2cf24dba5fb0a30e.bpb.tmp-1", "0000000042-2cf24dba5fb0a30e (conflict).bpb", "42-2cf24dba5fb0a30e.bpb"} {
		if _, ok := ParseBundleName(bad); ok {
			t.Errorf("ParseBundleName(%q) accepted", bad)
		}
	}
}

func TestLedgerRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	l, err := LoadLedger(path)
	if err != nil || len(l.Folders) != 0 {
		t.Fatalf("missing ledger: %+v %v", l, err)
	}
	f := l.Folder("/p1")
	f.Seen["bp1_x/0000000001-0123456789abcdef.bpb"] = &SeenBundle{Size: 10, SHA256: "ab", ModTime: time.Unix(5, 0).UTC(), Applied: 2, Refused: "bad signature"}
	f.Exported = append(f.Exported, &ExportedBundle{Name: "0000000001-aa.bpb", Seq: 1, EventIDs: []string{"evt_1", "evt_2"}})
	f.NextSeq = 2
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	g := got.Folder("/p1")
	if s := g.Seen["bp1_x/0000000001-0123456789abcdef.bpb"]; s == nil || s.Refused != "bad signature" || s.Applied != 2 || !s.ModTime.Equal(time.Unix(5, 0)) {
		t.Errorf("seen: %+v", s)
	}
	if g.NextSeq != 2 || len(g.Exported) != 1 || !slices.Equal(g.Exported[0].EventIDs, []string{"evt_1", "evt_2"}) {
		t.Errorf("exported: %+v", g)
	}
	if !g.carried()["evt_2"] {
		t.Error("carried misses evt_2")
	}
}

func TestExportSet(t *testing.T) {
	order := []string{"e1", "e2", "e3", "e4", "e5"}
	tests := []struct {
		name    string
		deltas  [][]string
		carried map[string]bool
		want    []string
	}{
		{"one peer", [][]string{{"e4", "e5"}}, nil, []string{"e4", "e5"}},
		{"two peers at different frontiers", [][]string{{"e4", "e5"}, {"e2", "e3", "e4", "e5"}}, nil, []string{"e2", "e3", "e4", "e5"}},
		{"our bundles already carry some", [][]string{{"e4", "e5"}, {"e2", "e3", "e4", "e5"}}, map[string]bool{"e2": true, "e4": true}, []string{"e3", "e5"}},
		{"all carried", [][]string{{"e4"}}, map[string]bool{"e4": true}, nil},
		{"no peer", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exportIDs(order, tt.deltas, tt.carried); !slices.Equal(got, tt.want) {
				t.Errorf("exportIDs = %v, want %v", got, tt.want)
			}
		})
	}
	full := bplog.Frontier{"a": {Head: "e1", Count: 1}}
	if b := exportBasis([]bplog.Frontier{full}); len(b) != 1 {
		t.Errorf("one peer: basis %v", b)
	}
	if b := exportBasis([]bplog.Frontier{full, {}}); len(b) != 0 {
		t.Errorf("a peer holding nothing: basis %v, want empty", b)
	}
	if b := exportBasis([]bplog.Frontier{full, {"b": {Head: "x", Count: 1}}}); b["a"].Head != "e1" {
		t.Errorf("several peers: basis %v, want the first", b)
	}
	if n := weLack(bplog.Frontier{"a": {Count: 2}}, bplog.Frontier{"a": {Count: 5}, "b": {Count: 1}, "c": {Count: 0}}); n != 4 {
		t.Errorf("weLack = %d, want 4", n)
	}
}

func TestCleanupDecision(t *testing.T) {
	ids := []string{"e1", "e2"}
	tests := []struct {
		name   string
		deltas []map[string]bool
		want   bool
	}{
		{"no peer known", nil, false},
		{"every peer holds it", []map[string]bool{{"e3": true}, {}}, true},
		{"one peer lacks an event", []map[string]bool{{}, {"e2": true}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := removable(ids, tt.deltas); got != tt.want {
				t.Errorf("removable = %v, want %v", got, tt.want)
			}
		})
	}
}
