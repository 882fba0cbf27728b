// Package lora moves opaque frames between backpack devices over LoRa
// radios: the link layer, airtime arithmetic, the duty-cycle budget and a
// simulated radio medium for tests. It knows nothing of events or bundles;
// the sync protocol is built on top of the [Link] interface.
//
// # Links
//
// A [Link] sends and receives frames of at most [Link.MTU] bytes. Delivery
// is best effort: frames may be lost, duplicated or reordered, and a link
// never acknowledges or retransmits. Three implementations exist:
//
//   - [TNC]: a generic KISS TNC over any io.ReadWriteCloser (data frames on
//     port 0).
//   - [RNode]: an RNode running the RNode firmware, spoken to over its host
//     protocol (KISS framing with RNode's own command bytes). [NewRNode]
//     detects the device, refuses firmware older than 1.52, configures the
//     radio and checks every setting the device reports back.
//     [OpenSerial] opens the serial port it usually sits behind.
//   - [SimLink]: a link attached to an in-memory [Medium] with seeded loss,
//     duplication, reordering, range, partitions, collisions, airtime and
//     duty cycle, so that protocol tests need no radio.
//
// # KISS framing
//
// [AppendFrame] and [Decoder] implement KISS (FEND, FESC, TFEND, TFESC and a
// command byte whose high nibble is the port). The decoder is streaming and
// bounded: a frame longer than its limit is dropped with a *[FrameError]
// (matching [ErrFrameTooLong]) and decoding resynchronises on the next FEND.
//
// # Airtime and duty cycle
//
// [Params.Airtime] is the Semtech time-on-air formula (SX127x/SX126x
// datasheets). A [Region] describes a regulatory regime (duty cycle over a
// sliding window, maximum dwell time per transmission); a [Budget] is the
// accountant that answers "may I send N bytes now, and if not, when?" and
// never lets any window exceed its share. A [Queue] orders outgoing frames
// in three classes (own events, relayed events, backfill) and estimates
// how long the queued frames will take under a budget.
//
// # Time
//
// Budget and Queue take the current time as an argument and read no clock,
// so they are deterministic. The Medium uses the time package; tests run it
// inside testing/synctest, where time is virtual and airtime of minutes
// passes instantly.
package lora
