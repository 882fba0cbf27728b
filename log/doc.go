// Package log is the signed event log of a Provara backpack: the event
// envelope, its content address (event_id) and Ed25519 signature, the key
// registry of identity/keys.json, and the file events/events.ndjson itself
// (a streaming reader and a crash-safe appender).
//
// # Events
//
// An event is one JSON object, one line of events.ndjson. Its event_id is
// "evt_" + the first 24 hex digits of SHA-256 over the canonical JSON of the
// event without event_id and sig (the profile rule). Several of the
// reference's writers computed the id before adding actor_key_id; such
// "legacy" ids are accepted on read and reported as such (IDRule). New
// events are always written with the profile rule. The signature covers the
// canonical bytes of the event without sig, so everything else, unknown
// fields included, is signed.
//
// # Chains and forks
//
// Each actor label forms a hash chain through prev_event_hash (which holds
// the previous event's event_id). An actor whose chain has two different
// events after the same predecessor has forked; so has an event_id that
// appears with two different contents. Both are evidence, never silently
// resolved: Chains reports them with the lines that carry them.
//
// # The file
//
// Reader follows the reference's reading rules (universal newlines, Python
// whitespace stripping, blank lines skipped) but reports every line it
// cannot use with its number instead of skipping it. Appender is the only
// writer: it holds an OS lock (on the file's directory) that other processes see, appends
// whole lines and fsyncs, and on open repairs a torn last line left by a
// crash without touching any complete line.
package log
