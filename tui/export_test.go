package tui

import (
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/status"
	bplog "github.com/backpack-field/backpack/log"
)

// What the external benchmarks (package tui_test, which may import the
// agent's Source) reach inside the model with.

// ViewNames lists the views, in their order.
var ViewNames = viewNames[:]

// FixedNow is the fixtures' clock.
func FixedNow() time.Time { return fixedNow() }

// Key is the message the terminal sends for a key name.
func Key(k string) tea.KeyMsg { return key(k) }

// Signed makes a real signed observation line.
func Signed(t testing.TB, k bplog.PrivateKey, actor, prev string, at time.Time, subject, pred string, value canon.Value) (*bplog.Event, string) {
	t.Helper()
	return signed(t, k, actor, prev, at, subject, pred, value)
}

// InView returns m showing view i (an index of ViewNames).
func (m Model) InView(i int) Model {
	m.view = view(i)
	return m
}

// Status is the status m shows.
func (m Model) Status() *status.Status { return m.status }

// OfflineMsg is the message of an offline status load.
func OfflineMsg(st *status.Status, stamp string) tea.Msg {
	return offlineMsg{st: st, stamp: stamp}
}

// StatusMsg is the message of a status from a subscribed agent.
func StatusMsg(st *status.Status) tea.Msg { return statusMsg{st} }

// DetailMsg is the message of a finished detail load.
func DetailMsg(d *Detail) tea.Msg { return detailMsg{d: d} }
