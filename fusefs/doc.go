// Package fusefs shows a backpack as a folder: a FUSE file system, served
// with go-fuse, that a person browses with a file manager and a script
// reads with cat and jq, and that takes new events only through the
// backpack's verified ingest.
//
// fusefs never opens a backpack: a Source (implemented by internal/agent
// over the store) hands it snapshots and performs its writes. fusefs only
// reads the backpack's files (the log, identity/, policies/, the
// manifest) and uses value types (reducer.State, canon.Value).
//
// # Views
//
// A View is an immutable tree built from one Snapshot of a Source:
// the backpack's own files byte for byte (never a private key),
// the reducer state as one small file per belief, per-actor timelines,
// forks with both signed events, the quarantine and pending events, and
// the sync status. Small files hold their bytes; the log and the
// timelines read events.ndjson on disk, up to the size the snapshot saw.
// View.FS exposes a view as an fs.FS, so the tree is tested without a
// mount. A Viewer (the server has one) builds each view from the
// previous one when the log only grew: state/ is updated for the beliefs
// the new lines name, the timelines are extended, and every untouched
// subtree is shared, so a change costs time in what changed. A rewritten
// or replaced log, or a line whose effect it cannot tell, builds the view
// from scratch. docs/FORMAT.md ("The mount") lists every path and how subject
// and predicate names are escaped (EscapeName).
//
// # Serving
//
// Mount mounts a Server. Every FUSE operation resolves its path in the
// current view, which the server swaps atomically when the backpack
// changes (the caller reports changes with Changed; a write through the
// mount rebuilds at once), so a reader sees one snapshot or the next,
// never a mixture. status.json is opaque bytes the caller sets
// (SetStatus, or Snapshot.Status). Views are built off the request path;
// kernel caches are invalidated afterwards from a separate goroutine,
// never from a handler and never under the server's locks, because
// go-fuse's notify calls deadlock there.
//
// # Writing
//
// Writes never reach the backpack's files directly. Complete lines
// appended to events/events.ndjson go to Source.AppendLines; a JSON file
// written into new/ becomes an event body that Source.Record signs with
// the device key; a bundle written into inbox/ goes to
// Source.ImportBundle. The Source's errors say which errno the writer
// gets (ErrRefused, ErrBusy, ErrDenied).
package fusefs
