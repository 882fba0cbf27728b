// Package radiosync keeps backpacks in sync over a LoRa [lora.Link], where
// every byte of airtime counts.
//
// # Compact batches
//
// Events travel in batches ([Codec]): per event a flags byte, the
// timestamp as a delta from the batch's previous one, and the rest of the
// event as canonical JSON without the members the receiver recomputes
// (event_id) or gets in binary, compressed together with zstd, optionally
// with a raw dictionary cut from the log both ends hold ([Dict]; the batch
// names the cut and a hash of the dictionary so that both ends agree).
// After the compressed part come the binary fields: the signature (64
// bytes), the key id (8 bytes, left out when it is the predecessor's),
// and the predecessor as a 4-byte reference when the receiver holds it
// (none when it is the actor's previous event in the batch, 12 bytes
// otherwise). The receiver re-materialises the exact canonical line of
// every event, so event ids and signatures verify as they did at the
// sender, and hands the lines to the store's one ingest path.
//
// # The protocol
//
// A [Syncer] speaks the protocol of docs/FORMAT.md ("Radio sync") over a
// link: short authenticated hellos with a digest of the frontier, a
// compact frontier when digests differ, then the missing events in
// fragmented batches with selective acknowledgement. Its state machine is
// [Node], which reads no clock and does no I/O, so that the simulator in
// lora/radiosim can drive many of them in virtual time.
package radiosync
