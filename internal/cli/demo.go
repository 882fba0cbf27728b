package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/status"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The demo runs a small field scenario through the real commands, in a
// temporary directory, and narrates it. It grows with every capability.

func runDemo(e *env, args []string) error {
	fs := newFlags(e, "demo", "[flags]", `Run a field scenario in a temporary directory: two devices of a water-point
survey each create a backpack, record observations, an assertion, a
coordinator's attestation, a contested reading and a retraction; then
verify, state, log, a checkpoint, offline sessions that merge, a fork kept
as evidence, a new device that joins and is trusted, three agents syncing
store-and-forward through two USB stick folders, the backpack mounted as a
folder that changes when a bundle arrives in its inbox, a simulated LoRa
radio hop, a crash in the middle of an append that is repaired on the next
open, and a tampered copy that verify pins down; on a terminal it ends in
the terminal screen (backpack tui).`)
	keep := fs.Bool("keep", false, "keep the temporary directory")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "backpack-demo-")
	if err != nil {
		return err
	}
	if *keep {
		defer fmt.Fprintf(e.stdout, "\nThe demo's files are kept in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	// Keys and device-local state go inside the demo directory, not the
	// user's home.
	for k, sub := range map[string]string{"XDG_CONFIG_HOME": "config", "XDG_STATE_HOME": "state"} {
		old, had := os.LookupEnv(k)
		os.Setenv(k, filepath.Join(tmp, sub))
		defer func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}()
	}
	d := &demoRun{e: e}
	north := filepath.Join(tmp, "north-camp")
	mobile := filepath.Join(tmp, "mobile-team")

	d.step("Two devices start their own backpacks")
	d.run("init", north, "--actor", "north_camp_laptop", "--uid", "wash-survey-north")
	d.run("init", mobile, "--actor", "mobile_team_tablet", "--uid", "wash-survey-mobile")

	d.step("The north camp records what it sees at two water points")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "status", "--value", `"working"`, "--confidence", "0.9")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "chlorine_mg_l", "--value", "0.4", "--confidence", "0.8")
	d.run("append", north, "--type", "ASSERTION", "--subject", "waterpoint_12", "--predicate", "status", "--value", `"dry"`)
	d.step("A second enumerator disagrees about waterpoint_07 (both confident): the belief becomes contested")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "status", "--value", `"broken"`, "--confidence", "0.85", "--actor", "enumerator_b")
	d.run("state", north, "--namespace", "contested")
	d.step("The coordinator attests the checked value; a wrong reading is retracted")
	d.run("append", north, "--type", "ATTESTATION", "--subject", "waterpoint_07", "--predicate", "status", "--value", `"working"`, "--actor", "coordinator")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_12", "--predicate", "queue_length", "--value", "40")
	d.run("append", north, "--type", "RETRACTION", "--subject", "waterpoint_12", "--predicate", "queue_length")
	d.step("A batch from a script, one event object per line on stdin")
	d.runStdin(`{"type":"OBSERVATION","payload":{"subject":"latrine_block_3","predicate":"usable","value":true,"confidence":0.7}}
{"type":"OBSERVATION","payload":{"subject":"household_118","predicate":"members","value":6}}
`, "append", north, "--event", "-")
	d.step("The mobile team works offline on its own tablet")
	d.run("append", mobile, "--type", "OBSERVATION", "--subject", "waterpoint_21", "--predicate", "status", "--value", `"working"`, "--confidence", "0.95")

	d.step("Everything verifies: ids, signatures, chains, manifest, Merkle root, manifest.sig")
	d.run("verify", north)
	d.run("verify", mobile, "-q")
	d.step("The reducer's view (byte-compatible with the Provara reference) and its hash")
	d.run("state", north, "--namespace", "canonical")
	d.run("state", north, "--hash")
	d.run("log", north, "-n", "5")
	d.run("forks", north)
	d.step("A signed checkpoint of the state")
	d.run("checkpoint", north)

	d.step("A second session of the north camp (a backup laptop with the same key) works offline, then both merge")
	backup := filepath.Join(tmp, "north-camp-backup")
	if err := copyTree(north, backup); err != nil {
		return err
	}
	d.run("append", backup, "--type", "OBSERVATION", "--subject", "waterpoint_31", "--predicate", "status", "--value", `"dry"`, "--confidence", "0.8", "--actor", "backup_laptop")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "chlorine_mg_l", "--value", "0.5", "--confidence", "0.8")
	d.run("merge", north, backup)
	d.run("merge", backup, north)
	d.say("Both now hold the same events in the same order:")
	d.run("frontier", north)
	d.run("frontier", backup)
	d.step("The backup also writes as the camp's own actor, after the same event: a fork, kept as evidence")
	d.run("append", backup, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "status", "--value", `"broken"`, "--confidence", "0.9")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "status", "--value", `"working"`, "--confidence", "0.9")
	d.run("merge", north, backup)
	d.run("forks", north)
	d.step("The mobile team's backpack has its own key: merging it puts its events in quarantine, not in the log")
	d.run("merge", north, mobile)

	d.step("A new tablet joins the survey as a device of the north camp's backpack, with its own key")
	tablet := filepath.Join(tmp, "tablet")
	d.run("join", north, tablet, "--actor", "tablet_3")
	d.run("append", tablet, "--type", "OBSERVATION", "--subject", "latrine_block_3", "--predicate", "usable", "--value", "false", "--confidence", "0.9")
	d.say("The camp tells the tablet what it holds; the tablet exports exactly what the camp lacks, as a signed zstd bundle:")
	frontier := filepath.Join(tmp, "north.frontier.json")
	out, code := d.capture("frontier", north)
	if code != ExitOK {
		d.failed++
	}
	if err := os.WriteFile(frontier, []byte(out), 0o644); err != nil {
		return err
	}
	bundle := filepath.Join(tmp, "tablet-to-north.bpk")
	d.run("export", tablet, "-o", bundle, "--since", frontier)
	d.say("The camp does not trust the tablet's key yet: its events wait in the quarantine.")
	d.run("import", north, bundle)
	d.say("After comparing the fingerprint, the camp trusts the key; the waiting event applies at once:")
	d.run("trust", north, filepath.Join(tablet, "identity", "keys.json"))
	d.run("export", north, "-o", filepath.Join(tmp, "north-to-tablet.bpk"))
	d.run("import", tablet, filepath.Join(tmp, "north-to-tablet.bpk"))
	d.say("Importing the same bundle again changes nothing:")
	d.run("import", tablet, filepath.Join(tmp, "north-to-tablet.bpk"))

	d.step("Store and forward: three devices, two USB sticks; the tablet carries between the camp and a truck that never meet")
	truck := filepath.Join(tmp, "truck")
	d.run("join", north, truck, "--actor", "truck_1")
	d.run("trust", north, filepath.Join(truck, "identity", "keys.json"))
	if err := d.agents(tmp, north, tablet, truck); err != nil {
		return err
	}

	d.step("The folder users look at: the camp's backpack mounted (FUSE); a reading from the truck arrives through its inbox/")
	if err := d.mount(tmp, north, truck); err != nil {
		return err
	}

	d.step("A radio hop: three simulated LoRa devices in a line (A hears B, B hears C), 10% of frames lost, EU868 duty cycle")
	d.say("Each has its own backpack and writes 10 events out of range; the middle one relays. Time is simulated.")
	d.run("sim", "--devices", "3", "--offline", "10", "--topology", "line", "--loss", "0.1", "--after", "10m")

	d.step("Power fails in the middle of an append: half a line is left at the end of the log")
	logPath := filepath.Join(north, "events", "events.ndjson")
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	f.WriteString(`{"actor":"north_camp_laptop","payload":{"subject":"waterpoint_0`)
	f.Close()
	d.say("The next append repairs the log (the torn bytes go to the device's quarantine, complete lines untouched):")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "waterpoint_07", "--predicate", "status", "--value", `"working"`, "--confidence", "0.95")
	d.run("log", north, "-n", "2")

	d.step("Someone edits a copy of the log by hand: verify says exactly where")
	tampered := filepath.Join(tmp, "tampered")
	if err := copyTree(north, tampered); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(tampered, "events", "events.ndjson"))
	if err != nil {
		return err
	}
	data = bytes.Replace(data, []byte(`"value":40`), []byte(`"value":4`), 1)
	if err := os.WriteFile(filepath.Join(tampered, "events", "events.ndjson"), data, 0o644); err != nil {
		return err
	}
	d.runExpectFail("verify", tampered)

	if d.failed > 0 {
		return fmt.Errorf("demo: %d steps did not go as expected", d.failed)
	}
	if isTerminal(e.stdout) && isTerminal(os.Stdin) && e.stdin == os.Stdin {
		fmt.Fprintln(e.stdout, "\nDemo complete. The camp's backpack in the terminal screen (press q to leave):")
		time.Sleep(2 * time.Second)
		return agent.RunTUI(e.ctx, agent.TUIOptions{Dir: north, In: os.Stdin, Out: e.stdout})
	}
	d.step("Summary: the camp's backpack as the terminal screen (`backpack tui`) would show it")
	d.run("status", north)
	fmt.Fprintln(e.stdout, "\nDemo complete. (On a terminal it ends in `backpack tui`.)")
	return nil
}

// mount mounts north's backpack, shows a belief file, has the truck send
// a newer reading as a bundle copied into the mount's inbox/, and shows
// the file change. Without FUSE it says why and goes on.
func (d *demoRun) mount(tmp, north, truck string) error {
	mnt := filepath.Join(tmp, "north-mount")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	m, err := agent.Mount(d.e.ctx, agent.MountOptions{Dir: north, Mountpoint: mnt})
	if err != nil {
		d.say("  (no mount here: " + err.Error() + "; the rest of the demo goes on)")
		return nil
	}
	defer m.Unmount()
	d.say("$ backpack mount north-camp north-mount &")
	// The belief's namespace can change with new evidence (local,
	// canonical, contested): find it.
	find := func() (string, []byte) {
		for _, ns := range []string{"canonical", "local", "contested"} {
			p := filepath.Join(mnt, "state", ns, "waterpoint_12", "status")
			if data, err := os.ReadFile(p); err == nil {
				return p, data
			}
		}
		return "", nil
	}
	belief, before := find()
	if belief == "" {
		d.failed++
		d.say("  (waterpoint_12/status is not in the mount's state/)")
		return nil
	}
	entries, _ := os.ReadDir(mnt)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	d.say("$ ls north-mount\n  " + strings.Join(names, "  "))
	rel, _ := filepath.Rel(tmp, belief)
	d.say("$ cat " + rel + "\n  " + strings.TrimSpace(string(before)))
	d.say("The truck records the pump repaired and exports what the camp lacks; someone copies the bundle into the mount's inbox/:")
	d.run("append", truck, "--type", "OBSERVATION", "--subject", "waterpoint_12", "--predicate", "status", "--value", "repaired", "--confidence", "0.95")
	frontier := filepath.Join(tmp, "north.frontier2.json")
	out, code := d.capture("frontier", north)
	if code != ExitOK {
		d.failed++
		return nil
	}
	if err := os.WriteFile(frontier, []byte(out), 0o644); err != nil {
		return err
	}
	bundle := filepath.Join(tmp, "truck-repair.bpk")
	d.run("export", truck, "-o", bundle, "--since", frontier)
	data, err := os.ReadFile(bundle)
	if err != nil {
		return err
	}
	d.say("$ cp truck-repair.bpk north-mount/inbox/")
	if err := os.WriteFile(filepath.Join(mnt, "inbox", "truck-repair.bpk"), data, 0o644); err != nil {
		d.failed++
		d.say("  (writing into the inbox failed: " + err.Error() + ")")
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p, now := find(); p != "" && (p != belief || !bytes.Equal(now, before)) {
			if p != belief {
				d.say("The mount follows at once. The readings now disagree, so the belief moved to " + filepath.Base(filepath.Dir(filepath.Dir(p))) + "/, with each value and its evidence:")
			}
			rel, _ := filepath.Rel(tmp, p)
			d.say("$ cat " + rel + "\n  " + strings.ReplaceAll(strings.TrimSpace(string(now)), "\n", "\n  "))
			break
		}
		if time.Now().After(deadline) {
			d.failed++
			d.say("  (the mount did not show the new value within 30 s)")
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res, err := os.ReadFile(filepath.Join(mnt, "inbox", "truck-repair.bpk.result")); err == nil {
		d.say("$ cat north-mount/inbox/truck-repair.bpk.result\n  " + strings.ReplaceAll(strings.TrimSpace(string(res)), "\n", "\n  "))
	}
	return nil
}

type demoRun struct {
	e      *env
	n      int
	failed int
}

func (d *demoRun) step(title string) {
	d.n++
	fmt.Fprintf(d.e.stdout, "\n== %d. %s\n", d.n, title)
}

func (d *demoRun) say(s string) { fmt.Fprintln(d.e.stdout, s) }

func (d *demoRun) show(args []string) {
	shown := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(a, os.TempDir()) {
			a = filepath.Base(a)
		}
		if strings.ContainsAny(a, ` "{`) {
			a = "'" + a + "'"
		}
		shown[i] = a
	}
	fmt.Fprintf(d.e.stdout, "$ backpack %s\n", strings.Join(shown, " "))
}

func (d *demoRun) exec(stdin string, args []string) int {
	d.show(args)
	var out bytes.Buffer
	code := Main(d.e.ctx, args, strings.NewReader(stdin), &out, &out)
	text := strings.ReplaceAll(out.String(), filepath.Dir(args[1])+string(filepath.Separator), "")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintf(d.e.stdout, "  %s\n", line)
	}
	return code
}

func (d *demoRun) run(args ...string) { d.runStdin("", args...) }

// capture runs a command without showing its output, and returns it.
func (d *demoRun) capture(args ...string) (string, int) {
	var out bytes.Buffer
	code := Main(d.e.ctx, args, strings.NewReader(""), &out, io.Discard)
	return out.String(), code
}

func (d *demoRun) runStdin(stdin string, args ...string) {
	if code := d.exec(stdin, args); code != ExitOK {
		d.failed++
		fmt.Fprintf(d.e.stdout, "  (unexpected exit status %d)\n", code)
	}
}

func (d *demoRun) runExpectFail(args ...string) {
	code := d.exec("", args)
	if code != ExitFailed {
		d.failed++
		fmt.Fprintf(d.e.stdout, "  (expected exit status %d, got %d)\n", ExitFailed, code)
		return
	}
	fmt.Fprintf(d.e.stdout, "  (exit status %d: verification failed, as it should)\n", code)
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}

// agents runs `backpack agent` (in this process) for three devices: the
// camp and the truck each share one USB stick folder with the tablet,
// which has both. Each records an event while they run; the demo waits
// until all three hold the same state.
func (d *demoRun) agents(tmp, north, tablet, truck string) error {
	stick1, stick2 := filepath.Join(tmp, "usb-stick-1"), filepath.Join(tmp, "usb-stick-2")
	devs := []struct {
		name, dir string
		peers     []string
	}{
		{"north", north, []string{stick1}},
		{"tablet", tablet, []string{stick1, stick2}},
		{"truck", truck, []string{stick2}},
	}
	ctx, cancel := context.WithCancel(d.e.ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, dev := range devs {
		for _, p := range dev.peers {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		}
		ag, err := agent.New(agent.Options{Dir: dev.dir, Peers: dev.peers, Interval: time.Second})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ag.Run(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(d.e.stdout, "  (agent for %s stopped: %v)\n", dev.name, err)
			}
		}()
		line := "$ backpack agent " + dev.name
		for _, p := range dev.peers {
			line += " --peer " + filepath.Base(p)
		}
		d.say(line + " &")
	}
	// The agents hold each backpack's lock only during a pass; commands
	// wait for it.
	d.run("append", truck, "--type", "OBSERVATION", "--subject", "waterpoint_12", "--predicate", "status", "--value", "dry", "--confidence", "0.8")
	d.run("append", north, "--type", "OBSERVATION", "--subject", "clinic_2", "--predicate", "queue_length", "--value", "14", "--confidence", "0.9")
	d.say("Waiting until the camp, the tablet and the truck hold the same events...")
	deadline := time.Now().Add(60 * time.Second)
	for {
		var hashes []string
		for _, dev := range devs {
			out, code := d.capture("status", dev.dir, "--json")
			var st status.Status
			if code == ExitOK && json.Unmarshal([]byte(out), &st) == nil {
				hashes = append(hashes, fmt.Sprintf("%d/%s", st.Backpack.Events, st.Backpack.StateHash))
			}
		}
		if len(hashes) == 3 && hashes[0] == hashes[1] && hashes[1] == hashes[2] {
			d.say("All three agree: " + hashes[0][:strings.IndexByte(hashes[0], '/')] + " events, state " + shortID(hashes[0][strings.IndexByte(hashes[0], '/')+1:]))
			break
		}
		if time.Now().After(deadline) {
			d.failed++
			d.say("  (the three devices did not converge within 60 s)")
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.say("The camp's log holds the truck's event, though the two never met:")
	d.run("log", north, "--actor", "truck_1")
	d.run("status", tablet)
	return nil
}

// quiet runs a command without showing it and returns its exit status.
func (d *demoRun) quiet(args []string) int {
	return Main(d.e.ctx, args, strings.NewReader(""), io.Discard, io.Discard)
}
