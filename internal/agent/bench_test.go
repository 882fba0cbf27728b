package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/gen"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/status"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

var (
	genOnce sync.Once
	genRes  *gen.Result
	genErr  error
	genRoot string
)

// generated makes, once per test binary, a backpack of n events (the
// first caller's n) and returns it.
func generated(b *testing.B, n int) *gen.Result {
	b.Helper()
	genOnce.Do(func() {
		genRoot, genErr = os.MkdirTemp("", "bpgen")
		if genErr != nil {
			return
		}
		os.Setenv("XDG_STATE_HOME", filepath.Join(genRoot, "s"))
		genRes, genErr = gen.Backpack(context.Background(), filepath.Join(genRoot, "src"), filepath.Join(genRoot, "keys"), gen.Options{Events: n, Actors: 5, Seed: 4})
	})
	if genErr != nil {
		b.Fatal(genErr)
	}
	return genRes
}

// sender is a second device of the generated backpack that makes
// bundles for the agent's peer folder: it writes as one of the generated
// actors, whose key the backpack trusts.
type sender struct {
	b    *testing.B
	dir  string
	key  bplog.PrivateKey
	kf   string
	into string // its bundles directory in the peer folder
	seq  int64
	n    int
}

func newSender(b *testing.B, g *gen.Result, base, peer string) *sender {
	b.Helper()
	s := &sender{b: b, dir: filepath.Join(base, "sender"), key: g.Keys[0], kf: filepath.Join(base, "sender.key")}
	if err := os.CopyFS(s.dir, os.DirFS(g.Dir)); err != nil {
		b.Fatal(err)
	}
	kf := bplog.KeyFile{Keys: []bplog.PrivateKey{s.key}, Actor: "field_team_1"}
	if err := os.WriteFile(s.kf, kf.Encode(), 0o600); err != nil {
		b.Fatal(err)
	}
	gn, err := store.ReadGenesis(g.Dir)
	if err != nil {
		b.Fatal(err)
	}
	s.into = filepath.Join(agent.BackpackDir(peer, gn.UID), s.key.ID, "bundles")
	if err := os.MkdirAll(s.into, 0o755); err != nil {
		b.Fatal(err)
	}
	return s
}

// bundle appends n events to the sender's backpack and returns a bundle
// of them, ready to drop.
func (s *sender) bundle(n int) []byte {
	s.b.Helper()
	bp, err := store.Open(context.Background(), s.dir, store.Options{KeyFile: s.kf})
	if err != nil {
		s.b.Fatal(err)
	}
	defer bp.Close()
	before := bp.Frontier()
	bodies := make([]canon.Value, n)
	for i := range bodies {
		s.n++
		var p, body canon.ObjectBuilder
		p.Set("subject", canon.StringValue(fmt.Sprintf("pump_%03d", s.n%500))).Set("predicate", canon.StringValue("status")).
			Set("value", canon.StringValue(fmt.Sprintf("reading %d", s.n))).Set("confidence", canon.FloatValue(0.8))
		body.Set("type", canon.StringValue("OBSERVATION")).Set("payload", p.Value())
		bodies[i] = body.Value()
	}
	if _, err := bp.AppendBatch(bodies); err != nil {
		s.b.Fatal(err)
	}
	lines, err := bp.Delta(context.Background(), before)
	if err != nil {
		s.b.Fatal(err)
	}
	h := bundles.Header{UID: bp.UID(), SenderKeyID: s.key.ID, SenderPublicKey: s.key.Public(), Sender: bp.Frontier(), Basis: before, CreatedAt: pytime.FormatUTC(time.Now())}
	var buf bytes.Buffer
	if _, err := bundles.Encode(&buf, h, lines, s.key.Key, bundles.EncodeOptions{}); err != nil {
		s.b.Fatal(err)
	}
	return buf.Bytes()
}

// drop writes a bundle into the peer folder as devices do: a temp file,
// then a rename to its final name.
func (s *sender) drop(data []byte) {
	s.b.Helper()
	s.seq++
	tmp := filepath.Join(s.into, fmt.Sprintf(".tmp-%d", s.seq))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		s.b.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.into, agent.BundleName(s.seq, data))); err != nil {
		s.b.Fatal(err)
	}
}

// benchAgent runs an agent on a copy of the generated backpack, with one
// peer folder, and returns it, its sender and its socket.
func benchAgent(b *testing.B, events int) (*sender, string, func()) {
	g := generated(b, events)
	base, err := os.MkdirTemp("", "bpa")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	b.Setenv("XDG_STATE_HOME", filepath.Join(base, "s"))
	dir := filepath.Join(base, "bp")
	if err := os.CopyFS(dir, os.DirFS(g.Dir)); err != nil {
		b.Fatal(err)
	}
	peer := filepath.Join(base, "peer")
	s := newSender(b, g, base, peer)
	a, err := agent.New(agent.Options{Dir: dir, Peers: []string{peer}, KeyFile: g.KeyFile, Interval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	dev, err := store.DeviceDir(mustUID(b, dir), dir)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	sock := agent.SocketPath(dev)
	waitStatus(b, sock, func(st *status.Status) bool { return st.Agent.Passes > 0 })
	return s, sock, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}
}

func mustUID(b *testing.B, dir string) string {
	g, err := store.ReadGenesis(dir)
	if err != nil {
		b.Fatal(err)
	}
	return g.UID
}

// waitStatus polls the agent's socket until cond holds and returns that
// status.
func waitStatus(b *testing.B, sock string, cond func(*status.Status) bool) *status.Status {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, err := agent.Query(context.Background(), sock, "status")
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent status never got there (last error %v)", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkAgentLatency100k: a 100-event bundle renamed into the peer
// folder of an agent running on a 100,000-event backpack, until the
// agent's status shows the events. Reports the median and the slowest.
func BenchmarkAgentLatency100k(b *testing.B) {
	s, sock, stop := benchAgent(b, 100000)
	defer stop()
	events := waitStatus(b, sock, func(*status.Status) bool { return true }).Backpack.Events
	var lat []time.Duration
	for b.Loop() {
		b.StopTimer()
		data := s.bundle(100)
		b.StartTimer()
		t0 := time.Now()
		s.drop(data)
		want := events + 100
		waitStatus(b, sock, func(st *status.Status) bool { return st.Backpack.Events >= want })
		lat = append(lat, time.Since(t0))
		events = want
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "ms-max")
}

// BenchmarkAgentSustained100k: 20 bundles of 100 events arrive one after
// the other, as fast as they can be written, while the agent ingests
// them; reports events per second from the first drop to the last event
// visible in the status.
func BenchmarkAgentSustained100k(b *testing.B) {
	s, sock, stop := benchAgent(b, 100000)
	defer stop()
	const bundlesPerRound = 20
	events := waitStatus(b, sock, func(*status.Status) bool { return true }).Backpack.Events
	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		data := make([][]byte, bundlesPerRound)
		for i := range data {
			data[i] = s.bundle(100)
		}
		b.StartTimer()
		t0 := time.Now()
		for _, d := range data {
			s.drop(d)
		}
		want := events + 100*bundlesPerRound
		waitStatus(b, sock, func(st *status.Status) bool { return st.Backpack.Events >= want })
		total += time.Since(t0)
		events = want
		n += 100 * bundlesPerRound
	}
	b.ReportMetric(float64(n)/total.Seconds(), "events/s")
}

// BenchmarkAgentIdle100k: an agent on a 100,000-event backpack with
// nothing to do, for 10 s per iteration: CPU time it used (this process's
// user+system time, the benchmark itself sleeps) and the Go heap in use.
func BenchmarkAgentIdle100k(b *testing.B) {
	_, _, stop := benchAgent(b, 100000)
	defer stop()
	runtime.GC()
	var cpu time.Duration
	var secs float64
	for b.Loop() {
		c0 := cpuTime()
		time.Sleep(10 * time.Second)
		cpu += cpuTime() - c0
		secs += 10
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(cpu.Microseconds())/1000/secs, "cpu-ms/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(rss())/(1<<20), "rss-MiB")
}

// rss is this process's resident set size (VmRSS), or 0.
func rss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
