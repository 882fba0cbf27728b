package tui

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"
)

// ErrNoTerminal is returned by Run when its output is not a terminal.
var ErrNoTerminal = errors.New("tui: standard output is not a terminal")

// Options configures Run.
type Options struct {
	// Source is where the data comes from (required); Run closes it.
	Source Source
	// Dir names the backpack in messages ("backpack agent DIR").
	Dir string
	// In and Out are the terminal (default os.Stdin and os.Stdout). Out
	// must be a terminal.
	In  io.Reader
	Out io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NoAltScreen draws in the normal screen instead of the alternate
	// one (the screen stays visible after quitting).
	NoAltScreen bool
}

// IsTerminal reports whether w is a terminal the TUI can draw on.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

// Run shows the TUI until the user quits or ctx ends (a clean stop,
// returning nil), and closes the Source. It returns ErrNoTerminal,
// before drawing anything, when Out is not a terminal.
func Run(ctx context.Context, opts Options) error {
	if opts.Source == nil {
		return errors.New("tui: Run needs a Source")
	}
	src := opts.Source
	defer src.Close()
	if opts.In == nil {
		opts.In = os.Stdin
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if !IsTerminal(opts.Out) {
		return ErrNoTerminal
	}
	popts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithInput(opts.In), tea.WithOutput(opts.Out)}
	if !opts.NoAltScreen {
		popts = append(popts, tea.WithAltScreen())
	}
	p := tea.NewProgram(NewModel(src, ModelOptions{Now: opts.Now, Dir: opts.Dir}), popts...)
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}
