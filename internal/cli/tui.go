package cli

import "github.com/backpack-field/backpack/internal/agent"

func runTUI(e *env, args []string) error {
	fs := newFlags(e, "tui", "DIR [--key FILE]", `Show the backpack in DIR on a terminal screen, live: the sync verdict, the
peers and what each side lacks, forks (with both signed events), held
events and untrusted keys, recent events and the reducer state. It
attaches to the running agent (`+"`backpack agent`"+`) and updates as its status
changes; with no agent it shows the backpack as on disk and says so.
Keys: 1-7 or tab switch views, j/k move, enter details, / filter, s sync
now, t trust a key (asks first), ? help, q quit. Needs a terminal: use
`+"`backpack status`"+` in scripts.`)
	key := fs.String("key", "", "device key file (needed to trust a key)")
	dir, err := onePositional(fs, args, "backpack directory")
	if err != nil {
		return err
	}
	if !isTerminal(e.stdout) {
		return usagef("needs a terminal, and standard output is not one (in scripts, use `backpack status %s --json`)", dir)
	}
	return agent.RunTUI(e.ctx, agent.TUIOptions{Dir: dir, KeyFile: *key, In: e.stdin, Out: e.stdout})
}
