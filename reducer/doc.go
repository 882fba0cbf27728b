// Package reducer folds a Provara event log into belief state exactly as
// the reference's SovereignReducerV0 0.2.0 does (SPEC.md §6), with a
// byte-identical state_hash, and adds what backpack needs on top: an
// incremental hash, lossless persistence and a binary cache form.
//
// # Concepts
//
// A State holds four namespaces of beliefs, each a map from a belief key
// ("subject:predicate") to an entry:
//
//   - canonical: attested truth, written by ATTESTATION;
//   - local: the current observation or assertion of a key;
//   - contested: keys with conflicting evidence at or above the confidence
//     threshold 0.5, with all their evidence grouped by value;
//   - archived: the canonical entries that were superseded or retracted.
//
// Behind them is the evidence index: every OBSERVATION and ASSERTION ever
// applied to a key, in order. It is never cleared and never hashed
// directly, but it decides evidence_count, total_evidence_count and the
// groups of a contested entry. The state hash is SHA-256 over the
// canonical JSON of the four namespaces plus metadata_partial (event count,
// last event id, current epoch, reducer identity); see StateHash.
//
// State.Apply takes any parsed log entry (canon.Value): entries that are
// not objects are ignored, every object is counted, and the type field
// selects the handler. Apply costs the same whatever the size of the state:
// a contest does not rebuild the evidence groups but keeps them
// incrementally, and a contested entry only records how many evidence
// records it shows (groups are append-only, so that count is a snapshot).
//
// StateHash is incremental. Every entry's canonical encoding is cached and
// redone only when the entry changed; evidence records are encoded once,
// when applied, into an append-only arena. The hash walk saves the SHA-256
// midstate every 32 KiB and resumes from the last one before the first
// changed entry, so hashing after one event costs the bytes from that
// entry to the end of the document, not the whole document.
//
// # Persistence
//
// HashPreimage (or PreimageValue) and Evidence together describe a State
// completely: Restore rebuilds it, and applying further events to the
// result gives what a full replay gives. The reference's load_checkpoint
// drops the evidence and so diverges from a full replay (SPEC §6.10);
// FromReferenceCheckpoint reproduces that lossy behaviour on purpose, for
// byte-identical resumes of reference checkpoints. MarshalBinary and
// UnmarshalBinary are a compact, versioned, checksummed form of the whole
// State for a cache file; decoding it is several times faster than parsing
// the canonical JSON of the preimage and the evidence.
//
// # Python semantics copied from the reference
//
//   - Truthiness decides `a or b` and `not x`: null, false, 0, 0.0, -0.0,
//     "", [] and {} are false, NaN is true. So an event_id of "" or 0 falls
//     back to id, then to "unknown_event"; last_event_id can be any JSON
//     value.
//   - str() of a value builds keys, actors, namespaces and timestamps:
//     1.0 gives "1.0", true "True", null "None", and arrays and objects give
//     Python's repr ("['a', 1]").
//   - Equality is Python's: 1 == 1.0 == true, so agreeing evidence of a
//     different type does not contest, while groups use the canonical text
//     and keep 1, 1.0 and true apart. json.loads shares one NaN object and
//     Python compares container elements by identity first, so [NaN] ==
//     [NaN] although NaN != NaN.
//   - Confidences go through float(): strings may carry whitespace
//     (Unicode, but not U+001C..U+001F, which float() does not strip),
//     underscores between digits, Unicode decimal digits, and inf,
//     infinity or nan in any case; NaN falls back to the default.
//   - Namespaces are stripped of Python whitespace and lower-cased; only
//     ASCII letters can lower-case into a namespace name.
//
// # Where the reference raises
//
// The reference throws an exception, and so has no state for the log,
// when a handled event has a truthy payload that is not an object, when a
// confidence is an integer too large for a float (OverflowError, from
// 2**1024 - 2**970 up), and when a contest meets an evidence value that
// cannot be canonicalised (a NaN or infinity anywhere in it). Apply then
// returns an *ApplyError and the State refuses further work. A non-finite
// float that reaches the hashed state without such an event (an "inf"
// confidence, a NaN value in a local entry) makes StateHash and the exports
// fail with an error wrapping canon.ErrNonFinite, as the reference's hash
// does; the condition is transient, since a later event can remove the
// entry.
//
// # Known deviations from the reference
//
//   - An object's repr follows canonical key order, not the order of the
//     JSON text: the parsed model sorts keys. Keys, actors or timestamps
//     built from objects with several members in non-sorted order differ
//     from the reference.
//   - Unicode tables are Go's (Unicode 15.0) where CPython 3.11 uses 14.0:
//     the 20 decimal digits added in 15.0 (Kawi, Nag Mundari) parse in
//     confidence strings, and the 4 482 code points assigned in 15.0 are
//     printed raw instead of escaped in a repr.
//   - Log lines that the reference reads differently from canon.Parse
//     (lone surrogate escapes, integers over 4 300 digits) never reach the
//     reducer; that is the log reader's business. Values built by hand
//     with strings that are not UTF-8 (the nearest Python has are lone
//     surrogates) make hashing fail, and a contest over one stops the
//     State where Python would fail only when hashing.
//   - Values nested deeper than 10 000 levels (canon.Parse refuses more
//     than 256 by default) are not supported: evidence holding them cannot
//     be hashed when contested, and the binary form refuses them.
//
// The package is pure: no I/O, no clock, no randomness, no goroutines.
package reducer
