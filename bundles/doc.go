// Package bundles is the file format in which events travel between the
// replicas of a backpack: the sender writes the events a receiver lacks into
// one file, the receiver reads it back and imports the events.
//
// # What a bundle is
//
// A bundle is a set of signed events plus a header that says where they
// come from. The events are opaque to this package: each is one canonical
// JSON line, exactly as the sender's events.ndjson holds it, and a bundle
// carries it byte for byte. Whether an event's id and signature are right,
// whether its key is trusted and where it fits in its actor's chain is the
// importer's business, decided against the receiver's own keys.
//
// The header names the backpack (backpack_uid), the sending device's key
// (sender_key_id), what the sender held when it exported (sender_frontier)
// and the frontier the delta was computed against (basis_frontier: the
// receiver's last known frontier, empty for a full export). A frontier says
// per actor the head event and the number of events held, so a delta is
// "what a holder of basis lacks", never "what comes after position N of a
// file" (which misses events that arrived by merge). It also carries the
// sender's public key (sender_public_key_b64) and, in a full export, the
// backpack's static files (files: genesis, keys.json, policies), so that
// a receiver that does not know the sender can record its key as seen and
// a person can make a new device from the bundle alone. Neither is ever
// trusted because a bundle carries it.
//
// # Integrity and trust
//
// The header carries event_count and content_sha256 (SHA-256 of the event
// lines), and the sender signs the canonical header without its sig member
// with its Ed25519 device key. So one signature binds the header and every
// byte of the events. Hashes and the signature cover the uncompressed
// content, never the zstd output, which may differ between zstd versions
// and levels. Decode checks the structure, count and hash;
// Bundle.VerifySignature checks the signature against the receiver's key
// registry and tells an untrusted sender (ErrUnknownSender) from a forged
// or damaged header (ErrBadSignature).
//
// # Bounded decoding
//
// A bundle comes from outside, so Decode reads it within Limits
// (compressed and decompressed size, header and line length, event count)
// and caps zstd's window and memory. A zstd bomb, an endless line or a
// header that announces a billion events is refused as soon as a bound is
// crossed, with a *FormatError that says where and matches ErrTooLarge;
// damaged or forged content matches ErrCorrupt and a precise sentinel
// (ErrContentHash, ErrEventCount, ErrNotCanonical, ...).
//
// # Two formats
//
// backpack bundles (Encode, Decode; docs/FORMAT.md "Bundles") are one zstd
// frame whose content is the header line and the event lines. The Provara
// reference's provara_delta_v1 bundles (EncodeReference, DecodeReference;
// SPEC.md §8.6-8.7) are uncompressed and unsigned, and carry the exporter's
// keys, which must never be trusted because a bundle carries them. Sniff
// tells the two apart from their first bytes.
//
// The package is synchronous: it starts no goroutines (zstd runs with
// concurrency 1) and never reads the clock; callers pass times.
package bundles
