package tui

import "github.com/charmbracelet/lipgloss"

// styles is the one set of styles every view shares. Without colour (an
// ASCII terminal, the golden tests) the text alone must carry the
// meaning: the fork banner says FORK in capitals, errors say "error".
type styles struct {
	title, dim, bold, ok, warn, bad lipgloss.Style
	banner, tab, tabActive, cursor  lipgloss.Style
	footer, footerErr, heading      lipgloss.Style
}

func newStyles() styles {
	return styles{
		title:     lipgloss.NewStyle().Bold(true),
		dim:       lipgloss.NewStyle().Faint(true),
		bold:      lipgloss.NewStyle().Bold(true),
		ok:        lipgloss.NewStyle().Foreground(lipgloss.AdaptiveColor{Light: "28", Dark: "42"}),
		warn:      lipgloss.NewStyle().Foreground(lipgloss.AdaptiveColor{Light: "130", Dark: "214"}),
		bad:       lipgloss.NewStyle().Foreground(lipgloss.Color("196")).Bold(true),
		banner:    lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("231")).Background(lipgloss.Color("160")),
		tab:       lipgloss.NewStyle(),
		tabActive: lipgloss.NewStyle().Bold(true).Reverse(true),
		cursor:    lipgloss.NewStyle().Reverse(true),
		footer:    lipgloss.NewStyle().Faint(true),
		footerErr: lipgloss.NewStyle().Foreground(lipgloss.Color("196")),
		heading:   lipgloss.NewStyle().Bold(true).Underline(true),
	}
}
