// Package agent is backpack's composition root: the long-running process
// (`backpack agent`) that keeps one backpack in sync with the other
// devices of the same backpack through peer drop folders.
//
// # Peer folders
//
// A peer folder is any directory several devices can reach in turn: a USB
// stick carried between sites, a shared drive, a Syncthing or rclone
// folder. Each device writes only inside its own directory,
// PEER/backpack-<uid>/<key id>/, so that synced folders never see two
// writers of one file: a signed device.json, a signed frontier.json (what
// the device holds) and bundles/ with the backpack.bundle.v1 files it
// exported. docs/FORMAT.md ("Peer folders") specifies every byte.
//
// # Passes
//
// The agent works in passes: on start, when the watcher reports a change
// in a peer folder or in the backpack's own events/ directory, on a timer,
// and on "sync now". A pass opens the store as a writer, imports every
// bundle of the other devices that its ledger has not seen (through
// store.ImportBundle, the checks of `backpack import`), exports one bundle
// with what the devices it heard from lack, writes its frontier, removes
// its own bundles that every device holds, and closes the store, so that
// CLI commands can take the backpack's lock between passes.
//
// # Status
//
// After every pass the agent publishes a status.Status (backpack, device,
// folders, peers, held events, errors, throughput and a one-line
// verdict), writes it to agent/status.json in the device directory, and
// serves it on agent/agent.sock as newline-delimited JSON.
//
// # The terminal screen
//
// Package tui renders; it reads nothing itself. NewTUISource is its
// tui.Source: the running agent's status stream over the socket, the
// offline status, and the details it shows (forks with both signed
// events, held events, untrusted keys, recent events, the reducer state)
// from a read-only open of the backpack; trusting a key opens it for
// writing. RunTUI builds that source and runs the screen; `backpack tui`
// calls it.
//
// # Mount
//
// Mount (`backpack mount`, or Options.Mount for `backpack agent --mount`)
// shows the backpack as a folder through fusefs. MountSource is the
// fusefs.Source behind it: one Backpack kept open and released between
// uses, caught up with the disk (Reacquire) for each new view and each
// write through the mount. A watcher on the backpack and its device
// directory tells the mount when others changed it. Inside the agent, the
// mount's status.json is the agent's own status; if mounting fails, the
// agent syncs without it and lists the reason among its recent errors.
package agent
