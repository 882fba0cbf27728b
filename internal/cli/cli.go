// Package cli is backpack's command line: one file per subcommand, the
// help texts, and the single table that turns errors into exit codes.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/backpack-field/backpack/internal/agent"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
	"golang.org/x/sys/unix"
)

// Exit codes. They are documented in the README and in `backpack help
// exit-codes`; scripts may rely on them.
const (
	ExitOK       = 0 // success
	ExitFailed   = 1 // verification failed (verify found a problem)
	ExitUsage    = 2 // bad command line
	ExitNotFound = 3 // not a backpack, or a file is missing
	ExitLocked   = 4 // another process is writing this backpack
	ExitNoKey    = 5 // no usable signing key
	ExitError    = 6 // any other error (I/O, bad input)
)

const exitCodesHelp = `Exit codes:
  0  success
  1  verification failed: verify found a problem (details in its report)
  2  usage: unknown command, bad flag or argument
  3  not a backpack (no identity/genesis.json) or a named file is missing
  4  locked: another process (an agent, another append) is writing this backpack
  5  no signing key: pass --key FILE, set BACKPACK_KEY, or use the key init made
  6  any other error (I/O error, invalid input); the message says what`

// usageError marks a command-line mistake.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// failedError means a check ran and found problems (already reported).
var errFailed = errors.New("verification failed")

// exitCode is the one place errors become exit codes.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errFailed):
		return ExitFailed
	case errors.As(err, &ue), errors.Is(err, flag.ErrHelp):
		return ExitUsage
	case errors.Is(err, store.ErrNotBackpack), errors.Is(err, os.ErrNotExist):
		return ExitNotFound
	case errors.Is(err, bplog.ErrLocked), errors.Is(err, agent.ErrAgentRunning):
		return ExitLocked
	case errors.Is(err, store.ErrNoKey):
		return ExitNoKey
	}
	return ExitError
}

// hint adds advice for errors a user can fix.
func hint(err error) string {
	switch {
	case errors.Is(err, bplog.ErrLocked):
		return "another backpack process (a running command, or an agent in a long pass) held the lock for the whole wait; try again, or stop it"
	case errors.Is(err, agent.ErrAgentRunning):
		return "one agent per backpack: stop the running one first, or ask it with `backpack status`"
	case errors.Is(err, store.ErrNoKey):
		return "pass --key FILE (the key file `backpack init` wrote) or set BACKPACK_KEY"
	case errors.Is(err, store.ErrNotBackpack):
		return "create one with `backpack init DIR`"
	}
	return ""
}

// env is what a command runs with.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	progressMu    sync.Mutex
	progressShown bool // a progress line is on stderr
}

// logger reports repairs and other notices from the store on stderr.
// logger logs warnings to stderr; BACKPACK_LOG_LEVEL=debug or info shows
// more (debug includes the time each phase of a sync took).
func (e *env) logger() *slog.Logger {
	level := slog.LevelWarn
	if v := os.Getenv("BACKPACK_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			level = slog.LevelWarn
		}
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

type command struct {
	name    string
	summary string
	run     func(e *env, args []string) error
}

func commands() []command {
	return []command{
		{"init", "create a backpack and its device key", runInit},
		{"append", "sign and append events", runAppend},
		{"verify", "check ids, signatures, chains, forks, manifest, Merkle root, caches", runVerify},
		{"state", "print the reducer state or its hash", runState},
		{"log", "list events", runLog},
		{"forks", "list actors whose chains split", runForks},
		{"manifest", "rebuild and re-sign manifest.json, merkle_root.txt, manifest.sig", runManifest},
		{"checkpoint", "write a signed state checkpoint", runCheckpoint},
		{"frontier", "print what this replica holds (per-actor heads), as JSON", runFrontier},
		{"export", "write a signed, compressed bundle of what another device lacks", runExport},
		{"import", "import bundles (backpack or provara_delta_v1), checked event by event", runImport},
		{"merge", "bring another replica's events into this one (checked like an import)", runMerge},
		{"quarantine", "list, retry or drop events held back from the log", runQuarantine},
		{"join", "make a new device of an existing backpack, with its own key", runJoin},
		{"trust", "trust another device's key (a signed key event every replica applies)", runTrust},
		{"fence", "create or check a fencing token (stale once the log advances)", runFence},
		{"agent", "sync with other devices through peer folders, until stopped", runAgent},
		{"status", "show sync status (from the running agent, or the backpack)", runStatus},
		{"tui", "watch sync status, forks and held events on a terminal screen", runTUI},
		{"mount", "show the backpack as a folder (FUSE) that follows it and takes checked writes", runMount},
		{"demo", "run a field scenario in a temporary directory", runDemo},
		{"sim", "simulate devices syncing over LoRa radios (virtual time, seeded)", runSim},
	}
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		usage(stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help", "-help":
		if len(args) > 1 && args[1] == "exit-codes" {
			fmt.Fprintln(stdout, exitCodesHelp)
			return ExitOK
		}
		if len(args) > 1 {
			return Main(ctx, []string{args[1], "--help"}, stdin, stdout, stderr)
		}
		usage(stdout)
		return ExitOK
	case "version", "--version":
		fmt.Fprintln(stdout, "backpack (Provara v1.0 compatible)")
		return ExitOK
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(e, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		if err != nil && !errors.Is(err, errFailed) {
			fmt.Fprintf(stderr, "backpack %s: %v\n", name, err)
			if h := hint(err); h != "" {
				fmt.Fprintf(stderr, "hint: %s\n", h)
			}
		}
		return exitCode(err)
	}
	fmt.Fprintf(stderr, "backpack: unknown command %q\n\n", name)
	usage(stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "backpack keeps a signed, append-only record (a Provara v1.0 backpack) in the field.")
	fmt.Fprintln(w, "\nUsage: backpack COMMAND [ARGS]   (backpack help COMMAND, or COMMAND --help)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n"+exitCodesHelp)
}

// flags is a command's flag set with its usage text.
type flags struct {
	*flag.FlagSet
	e                 *env
	name, args, about string
}

// newFlags returns a command's flags. -h/--help prints the usage on
// stdout; a flag mistake prints the error and usage on stderr.
func newFlags(e *env, name, args, about string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{FlagSet: fs, e: e, name: name, args: args, about: about}
}

// usage prints the command's usage: on stdout when asked for (help), on
// stderr after a mistake.
func (f *flags) usage(help bool) {
	out := f.e.stderr
	if help {
		out = f.e.stdout
	}
	fmt.Fprintf(out, "Usage: backpack %s %s\n\n%s\n\nFlags:\n", f.name, f.args, f.about)
	f.SetOutput(out)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
	fmt.Fprintln(out, "\n"+exitCodesHelp)
}

// parseArgs parses flags anywhere among the positional arguments.
func parseArgs(fs *flags, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.usage(true)
				return nil, err
			}
			fs.usage(false)
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// twoPositionals parses args that must hold exactly two positional
// arguments, named in what (e.g. "LOCAL and REMOTE").
func twoPositionals(fs *flags, args []string, what string) (string, string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", "", err
	}
	if len(pos) != 2 {
		fs.usage(false)
		return "", "", usagef("need %s, got %d arguments", what, len(pos))
	}
	return pos[0], pos[1], nil
}

func onePositional(fs *flags, args []string, what string) (string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		fs.usage(false)
		return "", usagef("need exactly one %s, got %d arguments", what, len(pos))
	}
	return pos[0], nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func shortID(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// lockWait is how long a command waits for the backpack's writer lock
// (an agent holds it during its passes, which are short).
const lockWait = 15 * time.Second

// openWriter opens dir for writing, waiting up to lockWait for the lock.
// On a terminal, long imports and merges show their progress on stderr.
func openWriter(e *env, dir, key string, opts ...func(*store.Options)) (*store.Backpack, error) {
	o := store.Options{Logger: e.logger(), KeyFile: key, LockWait: lockWait, Progress: e.progress()}
	for _, f := range opts {
		f(&o)
	}
	return store.Open(e.ctx, dir, o)
}

// withWriter opens dir for writing (opts adjust the store's options),
// runs fn, and closes it, returning the first error.
func withWriter(e *env, dir, key string, fn func(*store.Backpack) error, opts ...func(*store.Options)) error {
	b, err := openWriter(e, dir, key, opts...)
	if err != nil {
		return err
	}
	err = fn(b)
	e.endProgress()
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return err
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress returns a callback that keeps one line on stderr up to date
// with a long ingest, or nil when stderr is not a terminal.
func (e *env) progress() func(store.Progress) {
	if !isTerminal(e.stderr) {
		return nil
	}
	return func(p store.Progress) {
		e.progressMu.Lock()
		defer e.progressMu.Unlock()
		what := filepath.Base(p.Source)
		switch p.Phase {
		case "checking":
			pct := 0
			if p.Total > 0 {
				pct = p.Done * 100 / p.Total
			}
			fmt.Fprintf(e.stderr, "\r\033[K%s: checked %d of %d events (%d%%)", what, p.Done, p.Total, pct)
			e.progressShown = true
		default:
			// The last phase: the line stays, and what the command
			// prints next goes below it.
			fmt.Fprintf(e.stderr, "\r\033[K%s: checked %d events; %s %d into the log\n", what, p.Done, p.Phase, p.Total)
			e.progressShown = false
		}
	}
}

// endProgress clears the progress line, if one is shown.
func (e *env) endProgress() {
	e.progressMu.Lock()
	defer e.progressMu.Unlock()
	if e.progressShown {
		fmt.Fprint(e.stderr, "\r\033[K")
		e.progressShown = false
	}
}

// openLog opens dir's events.ndjson for reading, after checking that dir
// is a backpack.
func openLog(dir string) (*os.File, error) {
	if _, err := store.ReadGenesis(dir); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(dir, filepath.FromSlash(store.EventsPath)))
}
