// Package fusefs shows a backpack as a folder: a FUSE file system, served
// with go-fuse, that a person browses with a file manager and a script
// reads with cat and jq, and that takes new events only through the
// store's verified ingest.
//
// # Views
//
// A View is an immutable tree built from one read-only snapshot of the
// store: the backpack's own files byte for byte (never a private key),
// the reducer state as one small file per belief, per-actor timelines,
// forks with both signed events, the quarantine and pending events, and
// the sync status. Small files hold their bytes; the log and the
// timelines read events.ndjson on disk, up to the size the snapshot saw.
// View.FS exposes a view as an fs.FS, so the tree is tested without a
// mount. docs/FORMAT.md ("The mount") lists every path and how subject
// and predicate names are escaped (EscapeName).
//
// # Serving
//
// Mount mounts a Server. Every FUSE operation resolves its path in the
// current view, which the server swaps atomically when the backpack
// changes (a watcher on the backpack and its device directory, or a write
// through the mount), so a reader sees one snapshot or the next, never a
// mixture. Views are built off the request path; kernel caches are
// invalidated afterwards from a separate goroutine, never from a handler
// and never under the server's locks, because go-fuse's notify calls
// deadlock there.
//
// # Writing
//
// Writes never reach the backpack's files directly. Lines appended to
// events/events.ndjson are checked and handed to store.Ingest; a JSON
// file written into new/ becomes an event signed with the device key
// (store.Append); a bundle written into inbox/ is imported with
// store.ImportBundle. Each write opens the store as its writer for the
// batch and retries, with backoff, while another process (the agent
// during a pass) holds the lock.
package fusefs
