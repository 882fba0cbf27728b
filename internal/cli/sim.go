package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosim"
)

func runSim(e *env, args []string) error {
	fs := newFlags(e, "sim", "[FLAGS]", `Simulate devices that sync over LoRa radios: each device has a real
backpack (in a temporary directory, or --dir) and its own key, writes
--offline events as if it had been out of range, then syncs with the
radio protocol (docs/FORMAT.md, "Radio sync") over simulated radios.
Time is simulated and the run repeats for a seed. It reports when every
device held the same events, what went on air per event written, the
airtime each device used, and whether all state hashes agree.

Partitions: --partition "1h-30h:0,1|2" makes devices 0 and 1 hear only
each other and device 2 no one from 1 h to 30 h; separate several with ';'.`)
	devices := fs.Int("devices", 3, "number of devices")
	seed := fs.Uint64("seed", 1, "seed for every random decision")
	sf := fs.Int("sf", 9, "spreading factor (7..12)")
	bw := fs.Int("bw", 125000, "bandwidth in Hz")
	cr := fs.Int("cr", 5, "coding rate 4/N (5..8)")
	region := fs.String("region", "eu868", "duty-cycle regime: eu868 (1 %), eu869 (10 %), eu863 (0.1 %), us915 (400 ms dwell), none")
	loss := fs.Float64("loss", 0.2, "frame loss rate per receiver")
	dup := fs.Float64("dup", 0, "duplicate rate")
	reorder := fs.Float64("reorder", 0, "reorder rate")
	topo := fs.String("topology", "line", "who hears whom: line (neighbours only) or all")
	offline := fs.Int("offline", 100, "events each device writes before the radios start")
	parts := fs.String("partition", "", "partitions that come and go (see above)")
	half := fs.Bool("half-duplex", true, "a device is deaf while it transmits")
	coll := fs.Bool("collisions", true, "overlapping transmissions destroy each other at a receiver")
	sense := fs.Bool("carrier-sense", true, "with --collisions, radios listen before they talk")
	until := fs.Duration("until", 7*24*time.Hour, "give up after this much simulated time")
	after := fs.Duration("after", time.Hour, "after converging, measure in-sync traffic for this long")
	dir := fs.String("dir", "", "keep the backpacks in this (empty or new) directory")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.usage(false)
		return usagef("sim takes no arguments, got %d", len(pos))
	}
	cfg := radiosim.Config{
		Devices: *devices, Seed: *seed, Loss: *loss, Duplicate: *dup, Reorder: *reorder,
		Offline: *offline, HalfDuplex: *half, Until: *until, After: *after, Dir: *dir,
		Collisions: *coll, NoCarrierSense: !*sense,
		Params: lora.Params{SpreadingFactor: *sf, Bandwidth: *bw, CodingRate: *cr},
	}
	if *after > 0 {
		cfg.Settle = 30 * time.Minute
	}
	switch *topo {
	case "line":
		cfg.Line = true
	case "all":
	default:
		return usagef("--topology is line or all, not %q", *topo)
	}
	switch strings.ToLower(*region) {
	case "eu868":
		cfg.Region = lora.EU868
	case "eu869":
		cfg.Region = lora.EU869
	case "eu863":
		cfg.Region = lora.EU863
	case "us915":
		cfg.Region = lora.US915
	case "none":
		cfg.Region = lora.Unlimited
	default:
		return usagef("--region %q is not one of eu868, eu869, eu863, us915, none", *region)
	}
	if err := cfg.Params.Validate(); err != nil {
		return usagef("%v", err)
	}
	if *devices < 2 || *devices > 32 {
		return usagef("--devices must be 2..32")
	}
	if cfg.Partitions, err = parsePartitions(*parts, *devices); err != nil {
		return usagef("--partition: %v", err)
	}
	s, err := radiosim.New(e.ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.Run(e.ctx)
	if err != nil {
		return err
	}
	printSim(e, cfg, rep)
	if !rep.Converged || !rep.SameState {
		return fmt.Errorf("sim: the devices did not converge within %v (simulated); try a longer --until", *until)
	}
	return nil
}

func printSim(e *env, cfg radiosim.Config, rep *radiosim.Report) {
	w := e.stdout
	topo := "everyone hears everyone"
	if cfg.Line {
		topo = "in a line"
	}
	fmt.Fprintf(w, "%d devices %s; SF%d/%d kHz CR4/%d; %s; loss %.0f%%, duplicate %.0f%%, reorder %.0f%%; seed %d\n",
		cfg.Devices, topo, cfg.Params.SpreadingFactor, cfg.Params.Bandwidth/1000, cfg.Params.CodingRate,
		cfg.Region.Name, 100*cfg.Loss, 100*cfg.Duplicate, 100*cfg.Reorder, cfg.Seed)
	switch {
	case !cfg.Collisions:
		fmt.Fprintf(w, "collisions not modelled\n")
	case cfg.NoCarrierSense:
		fmt.Fprintf(w, "collisions modelled; radios do not listen before talking\n")
	default:
		fmt.Fprintf(w, "collisions modelled; radios listen before talking\n")
	}
	fmt.Fprintf(w, "events written: %d\n", rep.Written)
	if rep.Converged {
		fmt.Fprintf(w, "converged after %v (simulated)\n", rep.ConvergedAt.Round(time.Second))
	} else {
		fmt.Fprintf(w, "NOT converged after %v (simulated)\n", rep.End.Round(time.Second))
	}
	same := "no"
	if rep.SameState {
		same = "yes, " + shortID(rep.Devices[0].StateHash)
	}
	fmt.Fprintf(w, "same state hash on every device: %s\n", same)
	ev := float64(max(rep.Written, 1))
	fmt.Fprintf(w, "on air until then: %d frames, %d bytes, %v airtime; per event written: %.2f frames, %.0f bytes, %v\n",
		rep.Frames, rep.Bytes, rep.Airtime.Round(time.Millisecond), float64(rep.Frames)/ev, float64(rep.Bytes)/ev,
		(rep.Airtime / time.Duration(ev)).Round(time.Millisecond))
	if cfg.Collisions {
		fmt.Fprintf(w, "frames lost to collisions (whole run): %d\n", rep.Collisions)
	}
	fmt.Fprintf(w, "\n%-7s %-9s %7s %8s %9s %10s %8s %7s %6s %8s %8s %8s\n", "device", "actor", "events", "frames", "bytes", "airtime", "max/h", "heard", "lost", "collided", "ev sent", "ev recv")
	for i, d := range rep.Devices {
		fmt.Fprintf(w, "%-7d %-9s %7d %8d %9d %10v %8v %7d %6d %8d %8d %8d\n", i, d.Actor, d.Events, d.FramesOut, d.BytesOut,
			d.Airtime.Round(time.Millisecond), d.MaxWindowAirtime.Round(time.Millisecond), d.FramesIn, d.Lost, d.Collided,
			d.Counters.EventsSent, d.Counters.EventsReceived)
	}
	if a := cfg.Region.Allowance(); a > 0 {
		fmt.Fprintf(w, "(max/h: the most airtime a device used in any %v; %s allows %v)\n", cfg.Region.Window, cfg.Region.Name, a)
	}
	if cfg.After > 0 && rep.Converged {
		fmt.Fprintf(w, "\nin sync for %v: %d frames (%d hellos), %d bytes on air\n", cfg.After, rep.AfterFrames, rep.AfterHellos, rep.AfterBytes)
	}
}

// parsePartitions reads "FROM-TO:a,b|c;..." with Go durations.
func parsePartitions(s string, devices int) ([]radiosim.Partition, error) {
	var out []radiosim.Partition
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		span, groups, ok := strings.Cut(part, ":")
		from, to, ok2 := strings.Cut(span, "-")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%q is not FROM-TO:GROUPS", part)
		}
		var p radiosim.Partition
		var err error
		if p.From, err = time.ParseDuration(from); err != nil {
			return nil, err
		}
		if p.To, err = time.ParseDuration(to); err != nil {
			return nil, err
		}
		if p.To <= p.From {
			return nil, fmt.Errorf("%q ends before it starts", part)
		}
		for g := range strings.SplitSeq(groups, "|") {
			var ids []int
			for d := range strings.SplitSeq(g, ",") {
				d = strings.TrimSpace(d)
				if d == "" {
					continue
				}
				n, err := strconv.Atoi(d)
				if err != nil || n < 0 || n >= devices {
					return nil, fmt.Errorf("%q is not a device number 0..%d", d, devices-1)
				}
				ids = append(ids, n)
			}
			p.Groups = append(p.Groups, ids)
		}
		out = append(out, p)
	}
	return out, nil
}
