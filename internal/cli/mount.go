package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/backpack-field/backpack/internal/agent"
)

func runMount(e *env, args []string) error {
	fs := newFlags(e, "mount", "DIR MOUNTPOINT [flags]", `Show the backpack in DIR as a folder at MOUNTPOINT (an empty directory)
until SIGINT or SIGTERM, then unmount. The folder holds the backpack's own
files read-only (events/events.ndjson, identity/, policies/, manifest.json,
merkle_root.txt; never a private key), the state as one file per belief
(cat MOUNTPOINT/state/canonical/door_01/status), per-actor timelines,
forks, the quarantine and status.json. It follows the backpack as it
changes. Writing goes through the checks of import, never straight into
files: append signed event lines to events/events.ndjson (cat more.ndjson
>> MOUNTPOINT/events/events.ndjson), write {"subject", "predicate",
"value"} into new/NAME.json to record an observation signed with the
device key (new/NAME.json.done then holds its event id), or drop a bundle
into inbox/ (inbox/NAME.result says what the import did). docs/FORMAT.md
("The mount") lists every path. Needs /dev/fuse, and root or fusermount3.
To mount beside the sync agent, use `+"`backpack agent DIR --mount MOUNTPOINT`"+`.`)
	key := fs.String("key", "", "device key file (signs observations written to new/)")
	lockWait := fs.Duration("lock-wait", 15*time.Second, "how long a write waits for the backpack's lock before failing with EBUSY")
	readMode := fs.String("read-mode", "passthrough", "how events.ndjson is read: passthrough (the kernel reads the file itself while it is unchanged since the view: fastest; Linux 6.9+ as root, else as cache), cache (kernel page cache, invalidated on change, never past the view), plain, or direct")
	debug := fs.Bool("debug", false, "log every FUSE request")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.usage(false)
		return usagef("need DIR and MOUNTPOINT, got %d arguments", len(pos))
	}
	mode, err := agent.ParseReadMode(*readMode)
	if err != nil {
		return usagef("--read-mode: %v", err)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	srv, err := agent.Mount(e.ctx, agent.MountOptions{Dir: pos[0], Mountpoint: pos[1], KeyFile: *key,
		Logger: logger, LockWait: *lockWait, ReadMode: mode, Debug: *debug})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "mounted %s on %s (fuse.backpack); Ctrl-C or SIGTERM unmounts\n", pos[0], srv.Mountpoint())
	if err := srv.Serve(e.ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "unmounted %s\n", srv.Mountpoint())
	return nil
}
