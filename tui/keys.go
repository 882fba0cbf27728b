package tui

// keyMap lists the keys for the help screen; Model.key matches them.
type keyMap []keyHelp

type keyHelp struct{ keys, what string }

func defaultKeys() keyMap {
	return keyMap{
		{"1-7, tab, left/right", "switch views"},
		{"up/down, j/k", "move; pgup/pgdown, g/G jump"},
		{"enter", "details: full signed events, values"},
		{"esc", "close details, clear the filter"},
		{"/", "filter peers, events or state (words)"},
		{"n", "state: next namespace (contested, ...)"},
		{"s", "ask the running agent to sync now"},
		{"t", "held: trust the selected key (asks first)"},
		{"?", "this help"},
		{"q, ctrl+c", "quit"},
	}
}
