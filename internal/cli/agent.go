package cli

import (
	"log/slog"
	"time"

	"github.com/backpack-field/backpack/internal/agent"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return "" }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runAgent(e *env, args []string) error {
	fs := newFlags(e, "agent", "DIR --peer PATH [--peer PATH...] [flags]", `Run the sync agent for the backpack in DIR until SIGINT or SIGTERM. It
syncs DIR with the other devices of the same backpack through peer drop
folders (a USB stick, a shared drive, a Syncthing or rclone folder):
each device writes, only inside PATH/backpack-<uid>/<its key id>/, its
signed frontier and the bundles the others lack, and imports the others'
bundles with the checks of `+"`backpack import`"+` (docs/FORMAT.md, "Peer
folders"). It passes over the folders at start, when they or DIR's log
change, every --interval and on request (`+"`backpack status`"+` shows it).
The backpack is locked only during a pass, so other commands can write
between passes. One agent per backpack: a second one exits 4.

With --mount MOUNTPOINT the agent also shows the backpack as a folder
there, as `+"`backpack mount`"+` does, and unmounts it when it stops. If the
folder cannot be mounted (no FUSE), the agent says why and syncs anyway.`)
	var peers stringList
	fs.Var(&peers, "peer", "peer folder (repeat for several)")
	key := fs.String("key", "", "device key file")
	interval := fs.Duration("interval", 30*time.Second, "time between timed passes")
	keep := fs.String("keep-bundles", "auto", "auto: delete our bundles every known device holds; all: keep them")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	mountpoint := fs.String("mount", "", "also mount the backpack there (see `backpack mount`)")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	if len(peers) == 0 {
		fs.usage(false)
		return usagef("need at least one --peer PATH")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log-level: %v", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(e.stderr, hopts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(e.stderr, hopts))
	default:
		return usagef("--log-format must be text or json")
	}
	if *keep != "auto" && *keep != "all" {
		return usagef("--keep-bundles must be auto or all")
	}
	a, err := agent.New(agent.Options{Dir: dir, Peers: peers, KeyFile: *key, Interval: *interval, KeepBundles: *keep, Logger: logger,
		LogProgress: isTerminal(e.stderr), Mount: *mountpoint})
	if err != nil {
		return err
	}
	return a.Run(e.ctx)
}
