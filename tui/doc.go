// Package tui is backpack's terminal screen: the view an operator keeps
// open at base camp to see, without reading logs, whether the backpack is
// in sync, with whom, what is stuck and why, and whether anyone's history
// has split.
//
// # Data
//
// The screen renders two kinds of data, both delivered as messages:
//
//   - the live status of the running agent (status.Status), streamed over
//     the agent's unix socket (op "subscribe"): a goroutine reads it and
//     a tea.Cmd hands each status to Update. With no agent running the
//     status is built from the backpack on disk, and the screen says so.
//   - details the status does not carry (Detail: the forks with both
//     signed events, held events, untrusted keys, recent events, the
//     reducer state), loaded from a read-only open of the backpack in a
//     tea.Cmd whenever the status says the backpack changed (event count,
//     state hash, Merkle root, held counts). While an agent is subscribed
//     the disk is never polled on a timer; without one, a cheap stat of
//     the log and the device's held directories decides when to reload.
//
// Both come through Source, a small interface the package owns, so that
// Update never does I/O and tests drive the model with fixtures. The
// package reads nothing itself and never imports internal/store or
// internal/agent (STYLE.md section 1): internal/agent implements Source
// (agent.NewTUISource, over the socket and a read-only open of the
// backpack) and hands it to Run. The package uses only value types:
// internal/status for the status, and log for fork kinds.
//
// # Model
//
// Model is the one root model. It keeps the latest status and detail,
// the current view (overview, peers, forks, held, events, state, radio),
// per-view cursors and filters, and the overlays (help, a detail pane,
// a confirmation). View renders only what fits the terminal, from the
// stored values; it never calls the Source. Time shown on screen ("12s
// ago") comes from an injected clock, so that golden tests are stable.
//
// Run starts the program on a terminal over a Source; agent.RunTUI calls
// it, and `backpack tui` calls agent.RunTUI.
package tui
