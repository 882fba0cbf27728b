package fusefs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/fusefs"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/store"
)

// helperEnv makes the test binary a mount process (for the signal and
// stale-mount tests): BACKPACK_FUSEFS_HELPER=DIR|MNT|KEY.
const helperEnv = "BACKPACK_FUSEFS_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperMount(spec))
	}
	code := m.Run()
	cleanupBench()
	if cliPath != "" {
		os.RemoveAll(filepath.Dir(cliPath))
	}
	os.Exit(code)
}

func helperMount(spec string) int {
	parts := strings.Split(spec, "|")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := agent.Mount(ctx, agent.MountOptions{Dir: parts[0], Mountpoint: parts[1], KeyFile: parts[2],
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err)
		return 1
	}
	fmt.Println("mounted")
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "unmount:", err)
		return 1
	}
	return 0
}

// needFUSE skips when the test cannot mount.
func needFUSE(t testing.TB) {
	t.Helper()
	if os.Getenv("BACKPACK_TEST_FUSE") == "0" {
		t.Skip("BACKPACK_TEST_FUSE=0: FUSE tests disabled")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse (%v): FUSE mount tests need it", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				t.Skip("not root and no fusermount3: cannot mount")
			}
		}
	}
}

// mountFixture mounts fx on a temp dir, unmounted at cleanup; a panic in a
// handler fails the test.
func mountFixture(t testing.TB, fx *fixture, opts agent.MountOptions) (*agent.Mounted, string) {
	t.Helper()
	needFUSE(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts.Dir, opts.Mountpoint, opts.KeyFile = fx.dir, mnt, fx.key
	if opts.Logger == nil {
		level := slog.LevelWarn
		if testing.Verbose() {
			level = slog.LevelDebug
		}
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	}
	var mu sync.Mutex
	opts.OnPanic = func(p any) {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf("panic in a FUSE handler: %v", p)
	}
	srv, err := agent.Mount(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return srv, mnt
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// eventually retries f until it returns nil, for up to 10 s.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestMountMatchesDiskAndView reads every file through the mount and
// compares it with the disk (the backpack's own files) and with a view
// built apart (everything), and checks that no private key is reachable.
func TestMountMatchesDiskAndView(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	if got := fusefs.MountType(mnt); got != "fuse.backpack" {
		t.Errorf("mount type %q, want fuse.backpack", got)
	}
	v := newView(t, fx.dir)
	mfs := os.DirFS(mnt)
	var seen []string
	err := fs.WalkDir(mfs, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		seen = append(seen, p)
		if de.IsDir() || p == "status.json" {
			return nil
		}
		got, err := fs.ReadFile(mfs, p)
		if err != nil {
			return err
		}
		want, err := fs.ReadFile(v.FS(), p)
		if err != nil {
			return fmt.Errorf("%s is in the mount but not in the view: %v", p, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: mount and view differ", p)
		}
		if disk, err := os.ReadFile(filepath.Join(fx.dir, p)); err == nil && !strings.HasPrefix(p, "state/") {
			if !bytes.Equal(got, disk) {
				t.Errorf("%s: mount and disk differ", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var inView []string
	fs.WalkDir(v.FS(), ".", func(p string, de fs.DirEntry, err error) error {
		inView = append(inView, p)
		return nil
	})
	if len(seen) != len(inView)+1 { // + status.json
		t.Errorf("mount has %d paths, view %d", len(seen), len(inView))
	}
	if !strings.Contains(readFile(t, filepath.Join(mnt, "status.json")), `"uid": "test-uid"`) {
		t.Error("status.json does not name the backpack")
	}
	checkNoSecrets(t, mfs, fx.secrets(t))
	if _, err := os.Stat(filepath.Join(mnt, store.PrivateKeysPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("private_keys.json: %v", err)
	}
	// Read-only files refuse writes.
	if err := os.WriteFile(filepath.Join(mnt, "state/canonical/door_02/status"), []byte("x"), 0o644); err == nil {
		t.Error("a state file took a write")
	}
	if err := os.WriteFile(filepath.Join(mnt, "identity/keys.json"), []byte("x"), 0o644); err == nil {
		t.Error("keys.json took a write")
	}
}

// TestMountStateMatchesCLI compares the state through the mount with
// `backpack state`.
func TestMountStateMatchesCLI(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	bin := buildCLI(t)
	out, err := exec.Command(bin, "state", "--canonical", fx.dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(mnt, "state/state.json")); got != string(out) {
		t.Fatalf("state.json differs from `backpack state --canonical`")
	}
	for ns, want := range map[string]string{"canonical": "door_02:status", "contested": "door_01:status", "archived": "door_02:status"} {
		out, err := exec.Command(bin, "state", "--canonical", "--namespace", ns, fx.dir).Output()
		if err != nil {
			t.Fatal(err)
		}
		nsv, err := canon.Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		val := nsv.Field(want)
		if ns == "canonical" {
			val = val.Field("value")
		}
		if got := readFile(t, filepath.Join(mnt, fusefs.BeliefPath(ns, want))); got != string(canon.MustEncode(val))+"\n" {
			t.Errorf("%s %s: mount %q, CLI %q", ns, want, got, canon.MustEncode(val))
		}
	}
	if got := readFile(t, filepath.Join(mnt, "state/canonical/door_02/status")); got != "\"broken\"\n" {
		t.Errorf("cat state/canonical/door_02/status: %q", got)
	}
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

func buildCLI(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "backpack-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "backpack")
		if out, err := exec.Command("go", "build", "-o", cliPath, "../cmd/backpack").CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if cliErr != nil {
		t.Skipf("cannot build the CLI: %v", cliErr)
	}
	return cliPath
}

// replicaLines writes bodies in a copy of the backpack that shares its
// key, and returns the new signed lines.
func replicaLines(t testing.TB, fx *fixture, bodies ...canon.Value) [][]byte {
	t.Helper()
	rep := filepath.Join(t.TempDir(), "rep")
	if err := os.CopyFS(rep, os.DirFS(fx.dir)); err != nil {
		t.Fatal(err)
	}
	before := len(logLines(t, rep))
	fx.appendIn(t, rep, bodies...)
	return logLines(t, rep)[before:]
}

// TestMountAppendLine appends signed lines with `cat >>` and sees the
// state change through the mount.
func TestMountAppendLine(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	lines := replicaLines(t, fx,
		body("OBSERVATION", "pump_9", "status", canon.StringValue("running"), 0.9),
		body("OBSERVATION", "pump_9", "flow", canon.IntValue(12), 0.9))
	src := filepath.Join(t.TempDir(), "more.ndjson")
	if err := os.WriteFile(src, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(fx.dir, store.EventsPath))
	cmd := exec.Command("sh", "-c", `cat "$1" >> "$2"`, "sh", src, filepath.Join(mnt, store.EventsPath))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cat >>: %v: %s", err, out)
	}
	// The write returned after the ingest and the new view: read at once.
	if got := readFile(t, filepath.Join(mnt, "state/local/pump_9/status")); got != "\"running\"\n" {
		t.Fatalf("state after append: %q", got)
	}
	after := readFile(t, filepath.Join(fx.dir, store.EventsPath))
	if !strings.HasPrefix(after, before) || !strings.Contains(after, string(lines[1])) {
		t.Fatal("the lines are not in the log")
	}
	if got := readFile(t, filepath.Join(mnt, store.EventsPath)); got != after {
		t.Fatalf("events.ndjson through the mount (%d bytes) differs from disk (%d)", len(got), len(after))
	}
	// Appending the same lines again changes nothing and succeeds.
	if out, err := exec.Command("sh", "-c", `cat "$1" >> "$2"`, "sh", src, filepath.Join(mnt, store.EventsPath)).CombinedOutput(); err != nil {
		t.Fatalf("duplicate append: %v: %s", err, out)
	}
	if readFile(t, filepath.Join(fx.dir, store.EventsPath)) != after {
		t.Fatal("a duplicate append changed the log")
	}
	// A line written in two pieces, the second without a newline: it is
	// ingested at close.
	more := replicaLines(t, fx, body("OBSERVATION", "pump_9", "status", canon.StringValue("stopped"), 0.95))
	more = more[len(more)-1:]
	// (replicaLines copied the backpack after the append above, so this
	// event follows it.)
	f, err := os.OpenFile(filepath.Join(mnt, store.EventsPath), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := len(more[0]) / 2
	if _, err := f.Write(more[0][:half]); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(readFile(t, filepath.Join(fx.dir, store.EventsPath)), string(more[0])) {
		t.Fatal("a partial line was ingested")
	}
	if _, err := f.Write(more[0][half:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := readFile(t, filepath.Join(mnt, "state/contested/pump_9/status")); !strings.Contains(got, "stopped") {
		// running 0.9 vs stopped 0.95 by one actor contest each other.
		got2, _ := os.ReadFile(filepath.Join(mnt, "state/local/pump_9/status"))
		if !strings.Contains(string(got2), "stopped") {
			t.Fatalf("last line not applied: contested %q local %q", got, got2)
		}
	}
}

// TestMountAppendGarbage: invalid lines fail the write with EINVAL and the
// log does not change.
func TestMountAppendGarbage(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	logPath := filepath.Join(fx.dir, store.EventsPath)
	before := readFile(t, logPath)
	good := replicaLines(t, fx, body("OBSERVATION", "x", "y", canon.IntValue(1), 0.9))[0]
	tampered := bytes.Replace(good, []byte(`"value":1`), []byte(`"value":2`), 1)
	orphan := replicaLines(t, fx, body("OBSERVATION", "x", "y", canon.IntValue(1), 0.9),
		body("OBSERVATION", "x", "y", canon.IntValue(3), 0.9))[1]
	for name, data := range map[string][]byte{
		"garbage":         []byte("this is not json\n"),
		"not an event":    []byte("{\"a\":1}\n"),
		"tampered":        append(tampered, '\n'),
		"good then bad":   append(append(append([]byte{}, good...), '\n'), "]]\n"...),
		"no predecessor":  append(orphan, '\n'),
		"unsigned object": []byte(`{"type":"OBSERVATION","payload":{"subject":"a","predicate":"b","value":1}}` + "\n"),
	} {
		f, err := os.OpenFile(filepath.Join(mnt, store.EventsPath), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write(data)
		f.Close()
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: write returned %v, want EINVAL", name, err)
		}
		if readFile(t, logPath) != before {
			t.Fatalf("%s: the log changed", name)
		}
	}
	// An unfinished invalid last line fails at close.
	f, err := os.OpenFile(filepath.Join(mnt, store.EventsPath), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(`{"half":`)); err != nil {
		t.Fatalf("partial write: %v", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("close with an invalid partial line: %v, want EINVAL", err)
	}
	// Read-write opens are refused (a shared writable mapping would
	// reach the file in passthrough mode).
	if f, err := os.OpenFile(filepath.Join(mnt, store.EventsPath), os.O_RDWR, 0); !errors.Is(err, syscall.EPERM) {
		if err == nil {
			f.Close()
		}
		t.Errorf("O_RDWR open: %v, want EPERM", err)
	}
	// Truncating is refused.
	if err := os.WriteFile(filepath.Join(mnt, store.EventsPath), []byte("x\n"), 0o644); err == nil {
		t.Error("O_TRUNC write accepted")
	}
	if err := os.Truncate(filepath.Join(mnt, store.EventsPath), 0); err == nil {
		t.Error("truncate accepted")
	}
	if readFile(t, logPath) != before {
		t.Fatal("the log changed")
	}
	// Nothing was left held for later either.
	bp, err := store.Open(context.Background(), fx.dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	pending, _ := bp.Held("pending")
	if len(pending) != 0 {
		t.Errorf("pending events left: %v", pending)
	}
}

// exportBundle makes a backpack bundle of what a replica (same key) wrote
// beyond fx.
func exportBundle(t testing.TB, fx *fixture, bodies ...canon.Value) []byte {
	t.Helper()
	rep := filepath.Join(t.TempDir(), "rep")
	if err := os.CopyFS(rep, os.DirFS(fx.dir)); err != nil {
		t.Fatal(err)
	}
	return exportFrom(t, fx, rep, bodies...)
}

// exportFrom appends bodies in the replica rep (same key as fx) and
// returns a bundle of what fx lacks.
func exportFrom(t testing.TB, fx *fixture, rep string, bodies ...canon.Value) []byte {
	t.Helper()
	a, err := store.Open(context.Background(), fx.dir, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	basis := a.Frontier()
	a.Close()
	fx.appendIn(t, rep, bodies...)
	b, err := store.Open(context.Background(), rep, store.Options{ReadOnly: true, KeyFile: fx.key})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	lines, err := b.Delta(context.Background(), basis)
	if err != nil {
		t.Fatal(err)
	}
	key, err := b.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	h := bundles.Header{UID: b.UID(), SenderKeyID: key.ID, Sender: b.Frontier(), Basis: basis,
		CreatedAt: pytime.FormatUTC(time.Now())}
	if _, err := bundles.Encode(&buf, h, lines, key.Key, bundles.EncodeOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMountInbox drops a bundle into inbox/ and sees its events.
func TestMountInbox(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	data := exportBundle(t, fx, body("OBSERVATION", "bridge_4", "passable", canon.BoolValue(false), 0.9))
	src := filepath.Join(t.TempDir(), "delta.bpb")
	os.WriteFile(src, data, 0o644)
	if out, err := exec.Command("cp", src, filepath.Join(mnt, "inbox/delta.bpb")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	res := readFile(t, filepath.Join(mnt, "inbox/delta.bpb.result"))
	if !strings.Contains(res, `"applied": [`) || !strings.Contains(res, "evt_") {
		t.Fatalf("result: %s", res)
	}
	if got := readFile(t, filepath.Join(mnt, "state/local/bridge_4/passable")); got != "false\n" {
		t.Fatalf("state after import: %q", got)
	}
	names, err := os.ReadDir(filepath.Join(mnt, "inbox"))
	if err != nil || len(names) != 1 || names[0].Name() != "delta.bpb.result" {
		t.Fatalf("inbox after import: %v %v", names, err)
	}
	// A damaged bundle is refused: close fails, the result says why.
	bad := append([]byte{}, data...)
	bad[len(bad)/2] ^= 0xff
	err = os.WriteFile(filepath.Join(mnt, "inbox/bad.bpb"), bad, 0o644)
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("damaged bundle: %v, want EINVAL", err)
	}
	if res := readFile(t, filepath.Join(mnt, "inbox/bad.bpb.result")); !strings.Contains(res, `"refused": true`) {
		t.Errorf("damaged bundle result: %s", res)
	}
	if err := os.Remove(filepath.Join(mnt, "inbox/bad.bpb.result")); err != nil {
		t.Errorf("rm result: %v", err)
	}
}

// TestMountNew records an observation by writing a JSON file into new/.
func TestMountNew(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	obs := `{"subject": "tent_12", "predicate": "occupants", "value": 4, "confidence": 0.8}`
	if err := os.WriteFile(filepath.Join(mnt, "new/tent.json"), []byte(obs), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(readFile(t, filepath.Join(mnt, "new/tent.json.done")))
	if !strings.HasPrefix(id, "evt_") {
		t.Fatalf("done file: %q", id)
	}
	if !strings.Contains(readFile(t, filepath.Join(fx.dir, store.EventsPath)), `"event_id":"`+id+`"`) {
		t.Fatal("event not in the log")
	}
	if got := readFile(t, filepath.Join(mnt, "state/local/tent_12/occupants")); got != "4\n" {
		t.Fatalf("state: %q", got)
	}
	if _, err := os.Stat(filepath.Join(mnt, "new/tent.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("new/tent.json still there: %v", err)
	}
	before := readFile(t, filepath.Join(fx.dir, store.EventsPath))
	for name, bad := range map[string]string{
		"a.json": `{"subject": "a"}`,
		"b.json": `not json`,
		"c.json": `{"subject": "a", "predicate": "b", "value": 1, "actor": "someone_else"}`,
		"d.json": `{"subject": "a", "predicate": "b", "value": 1, "confidence": 7}`,
	} {
		err := os.WriteFile(filepath.Join(mnt, "new", name), []byte(bad), 0o644)
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
		if msg := readFile(t, filepath.Join(mnt, "new", name+".error")); msg == "" {
			t.Errorf("%s: empty error file", name)
		}
	}
	if readFile(t, filepath.Join(fx.dir, store.EventsPath)) != before {
		t.Fatal("refused observations changed the log")
	}
}

// TestMountInvalidation: read, change the backpack from outside, read
// again and see the new bytes (the watcher rebuilds the view and the
// kernel's caches are invalidated).
func TestMountInvalidation(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{ReadMode: fusefs.ReadCache})
	statePath := filepath.Join(mnt, "state/canonical/door_02/status")
	logPath := filepath.Join(mnt, store.EventsPath)
	if got := readFile(t, statePath); got != "\"broken\"\n" {
		t.Fatalf("before: %q", got)
	}
	oldLog := readFile(t, logPath)
	oldState := readFile(t, filepath.Join(mnt, "state/state.json"))
	fx.append(t, body("ATTESTATION", "door_02", "status", canon.StringValue("repaired"), -1))
	eventually(t, "new belief through the mount", func() error {
		if got := readFile(t, statePath); got != "\"repaired\"\n" {
			return fmt.Errorf("still %q", got)
		}
		return nil
	})
	if got := readFile(t, logPath); got == oldLog || !strings.HasPrefix(got, oldLog) {
		t.Fatalf("events.ndjson through the mount: %d bytes, was %d", len(got), len(oldLog))
	}
	if readFile(t, filepath.Join(mnt, "state/state.json")) == oldState {
		t.Fatal("state.json unchanged")
	}
	fi, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	disk, _ := os.Stat(filepath.Join(fx.dir, store.EventsPath))
	if fi.Size() != disk.Size() {
		t.Fatalf("stat size %d, disk %d", fi.Size(), disk.Size())
	}
	// A new subject directory appears in a listing made before.
	os.ReadDir(filepath.Join(mnt, "state/local"))
	fx.append(t, body("OBSERVATION", "gate_5", "open", canon.BoolValue(true), 0.9))
	eventually(t, "new subject", func() error {
		_, err := os.Stat(filepath.Join(mnt, "state/local/gate_5/open"))
		return err
	})
}

// TestMountConcurrentReaders reads while the backpack changes: every
// state.json read parses (never half of one snapshot and half of another).
func TestMountConcurrentReaders(t *testing.T) {
	fx := newFixture(t)
	_, mnt := mountFixture(t, fx, agent.MountOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				data, err := os.ReadFile(filepath.Join(mnt, "state/state.json"))
				if err != nil {
					errs <- err
					return
				}
				if _, err := canon.Parse(bytes.TrimSpace(data)); err != nil {
					errs <- fmt.Errorf("state.json did not parse: %v", err)
					return
				}
			}
		}()
	}
	for i := range 10 {
		fx.append(t, body("OBSERVATION", "counter", "n", canon.IntValue(int64(i)), 0.9))
		time.Sleep(30 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startHelper(t *testing.T, fx *fixture, mnt string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+fx.dir+"|"+mnt+"|"+fx.key)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if fusefs.MountType(mnt) != "" {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	// Wait for Mount to return, not only for the mount to answer: until
	// then go-fuse holds a file of the mount open (its poll probe), and a
	// process killed with it open hangs in its own FUSE flush forever.
	eventually(t, "helper mounted", func() error {
		if fusefs.MountType(mnt) != "fuse.backpack" || (!strings.Contains(out.String(), "\nmounted\n") && !strings.HasPrefix(out.String(), "mounted\n")) {
			return fmt.Errorf("not mounted; helper says: %s", out.String())
		}
		_, err := os.Stat(filepath.Join(mnt, "state/state.json"))
		return err
	})
	return cmd
}

// TestMountUnmountsOnSignal runs a mount process and stops it with
// SIGTERM; the mount goes away cleanly.
func TestMountUnmountsOnSignal(t *testing.T) {
	needFUSE(t)
	fx := newFixture(t)
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		mnt := filepath.Join(t.TempDir(), "mnt")
		os.Mkdir(mnt, 0o755)
		cmd := startHelper(t, fx, mnt)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: mount process: %v", sig, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%v: mount process did not stop", sig)
		}
		if typ := fusefs.MountType(mnt); typ != "" {
			t.Fatalf("%v: still mounted (%s)", sig, typ)
		}
	}
}

// TestMountRecoversStaleMount kills a mount process; the next Mount on
// the same directory cleans the stale mount and serves.
func TestMountRecoversStaleMount(t *testing.T) {
	needFUSE(t)
	fx := newFixture(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	cmd := startHelper(t, fx, mnt)
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after kill: stat %v, want ENOTCONN (a stale mount)", err)
	}
	srv, err := agent.Mount(context.Background(), agent.MountOptions{Dir: fx.dir, Mountpoint: mnt, KeyFile: fx.key})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Unmount()
	if got := readFile(t, filepath.Join(mnt, "state/canonical/door_02/status")); got != "\"broken\"\n" {
		t.Fatalf("after recovery: %q", got)
	}
	// A live mount is not taken over.
	if _, err := agent.Mount(context.Background(), agent.MountOptions{Dir: fx.dir, Mountpoint: mnt}); !errors.Is(err, fusefs.ErrMounted) {
		t.Fatalf("second mount: %v, want ErrMounted", err)
	}
}

// TestMountErrors: a missing mount point or backpack gives a clear error.
func TestMountErrors(t *testing.T) {
	needFUSE(t)
	fx := newFixture(t)
	_, err := agent.Mount(context.Background(), agent.MountOptions{Dir: fx.dir, Mountpoint: filepath.Join(fx.base, "nope")})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing mount point: %v", err)
	}
	_, err = agent.Mount(context.Background(), agent.MountOptions{Dir: fx.base, Mountpoint: t.TempDir()})
	if !errors.Is(err, store.ErrNotBackpack) {
		t.Errorf("not a backpack: %v", err)
	}
}

// TestMountReadModes: in every read mode events.ndjson reads as on disk,
// before and after the log grows.
func TestMountReadModes(t *testing.T) {
	for name, mode := range map[string]fusefs.ReadMode{"passthrough": fusefs.ReadPassthrough, "cache": fusefs.ReadCache, "plain": fusefs.ReadPlain, "direct": fusefs.ReadDirect} {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t)
			_, mnt := mountFixture(t, fx, agent.MountOptions{ReadMode: mode})
			p := filepath.Join(mnt, store.EventsPath)
			disk := filepath.Join(fx.dir, store.EventsPath)
			if readFile(t, p) != readFile(t, disk) {
				t.Fatal("events.ndjson differs from disk")
			}
			fx.append(t, body("OBSERVATION", "m", "n", canon.IntValue(1), 0.9))
			want := readFile(t, disk)
			eventually(t, "grown log through the mount", func() error {
				if got := readFile(t, p); got != want {
					return fmt.Errorf("%d bytes, disk %d", len(got), len(want))
				}
				return nil
			})
		})
	}
}

// TestMountLogBoundedBySnapshot: in the default (passthrough) mode, a file
// opened while the log on disk is ahead of the view reads the view's
// bytes; a file opened before reads the file as on disk (the documented
// exception); and appends through the mount work while a passthrough
// reader holds the log open.
func TestMountLogBoundedBySnapshot(t *testing.T) {
	fx := newFixture(t)
	// A long settle period: the watcher does not rebuild the view
	// during the test.
	srv, mnt := mountFixture(t, fx, agent.MountOptions{Settle: time.Hour})
	p := filepath.Join(mnt, store.EventsPath)
	before := readFile(t, p)
	if before != readFile(t, filepath.Join(fx.dir, store.EventsPath)) {
		t.Fatal("events.ndjson differs from disk")
	}
	held, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	fx.append(t, body("OBSERVATION", "late", "n", canon.IntValue(1), 0.9))
	disk := readFile(t, filepath.Join(fx.dir, store.EventsPath))
	if len(disk) <= len(before) {
		t.Fatal("the log did not grow")
	}
	if got := readFile(t, p); got != before {
		t.Fatalf("events.ndjson through the mount has %d bytes before the view changed, want the view's %d (disk has %d)", len(got), len(before), len(disk))
	}
	if got, err := io.ReadAll(held); err != nil || string(got) != disk {
		t.Fatalf("a file opened before the append: %d bytes, %v; want the disk's %d", len(got), err, len(disk))
	}
	// An append through the mount while the reader is open.
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := replicaLines(t, fx, body("OBSERVATION", "later", "n", canon.IntValue(2), 0.9))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("open for appending while a reader holds the log: %v", err)
	}
	if _, err := f.Write(append(line[len(line)-1], '\n')); err != nil {
		t.Fatalf("append while a reader holds the log: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(mnt, "state/local/later/n")); got != "2\n" {
		t.Fatalf("state after the append: %q", got)
	}
	if got, want := readFile(t, p), readFile(t, filepath.Join(fx.dir, store.EventsPath)); got != want {
		t.Fatalf("events.ndjson after the append: %d bytes, disk %d", len(got), len(want))
	}
	// Garbage appended with cat (copy_file_range, splice) while the reader
	// is open still goes through the checks.
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not an event\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	logBefore := readFile(t, filepath.Join(fx.dir, store.EventsPath))
	if out, err := exec.Command("sh", "-c", `cat "$1" >> "$2"`, "sh", garbage, p).CombinedOutput(); err == nil {
		t.Errorf("cat garbage >> events.ndjson succeeded: %s", out)
	}
	if readFile(t, filepath.Join(fx.dir, store.EventsPath)) != logBefore {
		t.Fatal("garbage reached the log")
	}
}

// TestMountLogReplaced: when the log is replaced by another file (as a
// merge's rewrite does), new opens read the new file even while a file
// opened before stays open, and that one keeps reading the old one.
func TestMountLogReplaced(t *testing.T) {
	fx := newFixture(t)
	srv, mnt := mountFixture(t, fx, agent.MountOptions{Settle: time.Hour})
	p := filepath.Join(mnt, store.EventsPath)
	disk := filepath.Join(fx.dir, store.EventsPath)
	old := readFile(t, p)
	held, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// The same events, one more line, written to a new file renamed
	// over the log.
	extra := replicaLines(t, fx, body("OBSERVATION", "swap", "n", canon.IntValue(2), 0.9))
	next := old + string(extra[len(extra)-1]) + "\n"
	tmp := disk + ".tmp"
	if err := os.WriteFile(tmp, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, disk); err != nil {
		t.Fatal(err)
	}
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new log through the mount", func() error {
		if got := readFile(t, p); got != next {
			return fmt.Errorf("%d bytes, want %d", len(got), len(next))
		}
		return nil
	})
	if got, err := io.ReadAll(held); err != nil || string(got) != old {
		t.Fatalf("the file opened before: %d bytes, %v; want the old %d", len(got), err, len(old))
	}
}

// TestMountLogRewrittenInPlace: a merge that puts events before the log's
// last lines rewrites its tail in place, which would change bytes under a
// reader. A file held open through the mount keeps reading the bytes it
// opened (the writer sees the mount's readers' lock and replaces the whole
// file instead), and a file opened after a rewrite done while none was
// open reads the new log, never the old view's size over new bytes.
func TestMountLogRewrittenInPlace(t *testing.T) {
	fx := newFixture(t)
	at := func(start time.Duration) func() time.Time {
		t := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(start)
		return func() time.Time {
			t = t.Add(20 * time.Second)
			return t
		}
	}
	appendAs := func(dir, actor string, now func() time.Time, n int) {
		bp, err := store.Open(context.Background(), dir, store.Options{KeyFile: fx.key, Actor: actor, Now: now, LockWait: 15 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer bp.Close()
		for i := range n {
			if _, err := bp.Append(body("OBSERVATION", actor, "n", canon.IntValue(int64(i)), 0.5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Another device's events, whose times fall among the log's last
	// lines.
	late := func(actor string, start time.Duration) [][]byte {
		rep := filepath.Join(t.TempDir(), "rep")
		if err := os.CopyFS(rep, os.DirFS(fx.dir)); err != nil {
			t.Fatal(err)
		}
		appendAs(rep, actor, at(start), 3)
		var out [][]byte
		for _, l := range logLines(t, rep) {
			if bytes.Contains(l, []byte(`"actor":"`+actor+`"`)) {
				out = append(out, l)
			}
		}
		return out
	}
	// Appends take about a minute of this clock each.
	appendAs(fx.dir, "camp", at(0), 40)
	truck := late("truck", 36*time.Minute+30*time.Second)
	appendAs(fx.dir, "camp", at(41*time.Minute), 10)
	cart := late("cart", 46*time.Minute+30*time.Second)

	srv, mnt := mountFixture(t, fx, agent.MountOptions{Settle: time.Hour})
	p := filepath.Join(mnt, store.EventsPath)
	disk := filepath.Join(fx.dir, store.EventsPath)
	ino := func() uint64 {
		fi, err := os.Stat(disk)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}

	// A reader holds the log open across the merge.
	old := readFile(t, p)
	held, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(held, head); err != nil {
		t.Fatal(err)
	}
	was := ino()
	if res := fx.ingest(t, truck); len(res.Applied) != 3 {
		t.Fatalf("applied %d of truck's 3 events: %+v", len(res.Applied), res)
	}
	merged := readFile(t, disk)
	if strings.HasPrefix(merged, old) {
		t.Fatal("truck's events did not go before the log's last lines: no rewrite to test")
	}
	if ino() == was {
		t.Fatal("the log was rewritten in place while a reader held it through the mount")
	}
	rest, err := io.ReadAll(held)
	if err != nil || string(head)+string(rest) != old {
		t.Fatalf("the file held open read %d bytes (%v), want the %d it opened", len(head)+len(rest), err, len(old))
	}
	held.Close()
	if err := srv.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p); got != merged {
		t.Fatalf("after the merge the mount shows %d bytes, disk %d", len(got), len(merged))
	}

	// No reader: the tail is rewritten in place, and the view (not
	// rebuilt: a long settle) is stale. An open must see the new log.
	// (The kernel releases closed files asynchronously.)
	eventually(t, "the mount's readers gone", func() error {
		f, err := os.Open(disk)
		if err != nil {
			return err
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	})
	was = ino()
	if res := fx.ingest(t, cart); len(res.Applied) != 3 {
		t.Fatalf("applied %d of cart's 3 events: %+v", len(res.Applied), res)
	}
	want := readFile(t, disk)
	if strings.HasPrefix(want, merged) {
		t.Fatal("cart's events did not go before the log's last lines: no rewrite to test")
	}
	if ino() != was {
		t.Fatal("with no reader the tail was not rewritten in place; the test needs that case")
	}
	if got := readFile(t, p); got != want {
		t.Fatalf("opened after an in-place rewrite: %d bytes, want the new log's %d", len(got), len(want))
	}
}
