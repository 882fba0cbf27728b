// Package merkle seals a Provara backpack: the manifest that lists every
// file with its SHA-256 and size, the Merkle root over that list, and the
// detached Ed25519 signature over the root (SPEC.md §5).
//
// # Concepts
//
// A Hash is a SHA-256 digest, written as 64 lowercase hex digits: the
// content address of a file, a node of the Merkle tree, or its root.
//
// The manifest (manifest.json) lists every regular file under the backpack
// directory as an Entry {"path", "sha256", "size"}, sorted by path in byte
// order. Four root-relative paths are never listed, because they are the
// seal itself or a secret: manifest.json, manifest.sig, merkle_root.txt and
// identity/private_keys.json (DefaultExclude). The file is canonical JSON
// without a trailing newline; its created_at_utc is the only field that is
// not a function of the directory contents.
//
// The Merkle root binds the entries: each leaf is the SHA-256 of one
// entry's canonical JSON as stored, each parent is SHA-256(left || right)
// over raw digests, an odd level pairs its last node with itself, and no
// entries give SHA-256 of nothing. created_at_utc is not in any leaf, so an
// unchanged directory keeps its root. merkle_root.txt holds the root in hex
// and a newline.
//
// manifest.sig signs the root (with the key id, the spec version and the
// signing time), and so every file's hash. The reference's writers other
// than bootstrap rewrite the root without re-signing, so a valid signature
// over an older root is common; VerifyManifestSig tells that case apart
// from a bad signature.
//
// # Order is checked, never repaired
//
// Functions that compute a root to be written (RootOf, Manifest.Root,
// NewManifest) refuse entries that are out of order or duplicated with
// ErrUnsorted; builders sort with SortEntries first. Functions that judge
// what is on disk keep what they read: ParseManifest accepts a manifest
// with wrong values so that Verify can report each of them, and
// ReferenceRoot recomputes a stored manifest's root the way the reference
// does (sorting a copy).
//
// # Unknown members are kept and reported
//
// The reference hashes each entry as stored, whatever members it has, and
// ignores unknown top-level members. ParseManifest therefore keeps unknown
// members (Manifest.Extra, Entry.Extra): entry members stay in the Merkle
// leaf, so the root matches the reference's, and Encode reproduces the
// input. Verify lists every one of them as a warning, since nothing checks
// them against the disk. Likewise SigRecord.Extra is covered by the
// signature, which is over everything but "sig".
//
// # Verification
//
// Verify (or VerifyDir, which also reads manifest.json and
// merkle_root.txt) returns a Report: per path, missing files, size and
// digest mismatches, phantom files, unsafe manifest paths and symlinks
// leading outside the directory; for the manifest, order, duplicates,
// file_count and version faults; and three roots (merkle_root.txt, the
// root recomputed from the manifest, the root of a fresh walk) with the
// mismatches between them. Problems fail verification; warnings (unknown
// members, skipped dangling links, a non-canonical manifest.json) do not.
// A symlink leading outside the directory is a problem even though the
// reference's walk only warns about it: its compliance suite counts it as
// a phantom file.
//
// # Disk access
//
// Everything here is pure computation except Build and Verify (and
// VerifyDir), which read the backpack directory through an os.Root, so no
// path, however it is spelled or linked, reads outside the directory. Both
// walk the tree like the reference: hidden files and any depth included,
// symlinks to files inside the root counted with the target's bytes,
// symlinked directories not descended, symlinks leading outside skipped and
// reported. Build can skip re-hashing through a HashCache. Nothing in the
// package reads the clock: callers pass timestamps in, formatted with
// internal/pytime. Nothing starts a goroutine.
package merkle
