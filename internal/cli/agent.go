package cli

import (
	"log/slog"
	"strings"
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
folder cannot be mounted (no FUSE), the agent says why and syncs anyway.

With --lora DEVICE it also syncs over a LoRa radio on that serial port
(an RNode, or a KISS TNC with --lora-driver kiss) with the devices in
range, never exceeding the region's duty cycle (docs/FORMAT.md, "Radio
sync"); peer folders are then optional. If the radio goes away it says
so in the status and reconnects.`)
	var peers stringList
	fs.Var(&peers, "peer", "peer folder (repeat for several)")
	key := fs.String("key", "", "device key file")
	interval := fs.Duration("interval", 30*time.Second, "time between timed passes")
	keep := fs.String("keep-bundles", "auto", "auto: delete our bundles every known device holds; all: keep them")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	mountpoint := fs.String("mount", "", "also mount the backpack there (see `backpack mount`)")
	readMode := fs.String("read-mode", "passthrough", "with --mount: how events.ndjson is read (see `backpack mount -h`)")
	loraDev := fs.String("lora", "", "serial port of a LoRa radio to sync over (e.g. /dev/ttyUSB0)")
	loraDriver := fs.String("lora-driver", "rnode", "rnode or kiss (a generic KISS TNC)")
	loraFreq := fs.Float64("lora-freq", 868.1, "frequency, MHz")
	loraBW := fs.Float64("lora-bw", 125, "bandwidth, kHz")
	loraSF := fs.Int("lora-sf", 9, "spreading factor (7-12)")
	loraCR := fs.Int("lora-cr", 5, "coding rate 4/N (5-8)")
	loraTXP := fs.Int("lora-txp", 14, "transmit power, dBm (RNode)")
	loraRegion := fs.String("lora-region", "", "duty-cycle rules: EU868, EU869, EU863, US915 or unlimited (default: from the frequency, in the EU band)")
	loraBaud := fs.Int("lora-baud", 115200, "serial speed")
	loraHello := fs.Duration("lora-hello", 10*time.Minute, "how often to say hello over the radio (shorter: quicker, more airtime)")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	if len(peers) == 0 && *loraDev == "" {
		fs.usage(false)
		return usagef("need at least one --peer PATH, or a radio (--lora DEVICE)")
	}
	var radio *agent.RadioOptions
	if *loraDev != "" {
		radio = &agent.RadioOptions{Device: *loraDev, Driver: *loraDriver, Baud: *loraBaud,
			Frequency: uint32(*loraFreq*1e6 + 0.5), Bandwidth: uint32(*loraBW*1e3 + 0.5),
			SpreadingFactor: *loraSF, CodingRate: *loraCR, TXPower: *loraTXP, Region: *loraRegion, HelloEvery: *loraHello}
	}
	mode, err := agent.ParseReadMode(*readMode)
	if err != nil {
		return usagef("--read-mode: %v", err)
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
		LogProgress: isTerminal(e.stderr), Mount: *mountpoint, MountReadMode: mode, Radio: radio})
	if err != nil {
		if radio != nil && strings.HasPrefix(err.Error(), "agent: radio:") {
			return usagef("%v", err)
		}
		return err
	}
	return a.Run(e.ctx)
}
