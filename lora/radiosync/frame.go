package radiosync

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
)

// Frame layout (docs/FORMAT.md, "Radio sync"). Every frame starts with a
// type byte (version in the high nibble), the sender's 2-byte hint, and,
// except in a HELLO, the receiver's hint; then a 40-bit counter. Unicast
// frames end with an 8-byte tag, HMAC-SHA256 under the pair's key.
const (
	version    = 2
	hintSize   = 2
	ctrSize    = 5
	headerSize = 1 + 2*hintSize + ctrSize // type, src, dst, counter
	tagSize    = 8
	dataExtra  = 4 // transfer id (2), fragment index, fragment count
	// DataOverhead is what a DATA frame adds to the batch bytes it
	// carries.
	DataOverhead = headerSize + dataExtra + tagSize
	digestSize   = 6
	// helloHead is a HELLO before its tags: type, src, counter, digest.
	helloHead = 1 + hintSize + ctrSize + digestSize
	helloTag  = hintSize + tagSize
)

// Frame types.
const (
	typeHello    = 1
	typeFrontier = 2
	typeData     = 3
	typeAck      = 4
)

// ACK status.
const (
	ackPartial  = 0 // bitmap says which fragments arrived
	ackDone     = 1 // reassembled, decoded and ingested
	ackNoDict   = 2 // the dictionary could not be rebuilt: send again without
	ackRefused  = 3 // no room for the transfer now: try again later
	ackBadBatch = 4 // reassembled but does not decode: do not send again
)

var errFrame = errors.New("radiosync: bad frame")

// hint is a device's 2-byte name on the air: the first two bytes of
// SHA-256 of its public key (the first 4 hex digits of its key id).
type hint [hintSize]byte

func hintOf(pub ed25519.PublicKey) hint {
	s := sha256.Sum256(pub)
	return hint(s[:hintSize])
}

// pairKey derives the key two devices share: X25519 between the own
// Ed25519 key (as a Montgomery scalar) and the peer's public key (as a
// Montgomery point), hashed with the backpack uid so that keys differ per
// backpack. Both ends compute the same key; no one else can.
func pairKey(own ed25519.PrivateKey, peer ed25519.PublicKey, uid string) ([32]byte, error) {
	h := sha512.Sum512(own.Seed())
	priv, err := ecdh.X25519().NewPrivateKey(h[:32]) // clamped by X25519
	if err != nil {
		return [32]byte{}, err
	}
	p, err := new(edwards25519.Point).SetBytes(peer)
	if err != nil {
		return [32]byte{}, fmt.Errorf("radiosync: peer key is not a curve point: %w", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(p.BytesMontgomery())
	if err != nil {
		return [32]byte{}, err
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("radiosync: peer key gives no shared secret: %w", err)
	}
	m := sha256.New()
	m.Write([]byte("backpack radio sync v1\x00"))
	m.Write(shared)
	m.Write([]byte(uid))
	return [32]byte(m.Sum(nil)), nil
}

func tag(key [32]byte, msg []byte) [tagSize]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(msg)
	return [tagSize]byte(m.Sum(nil))
}

func putCtr(b []byte, c uint64) {
	for i := range ctrSize {
		b[i] = byte(c >> (8 * (ctrSize - 1 - i)))
	}
}

func getCtr(b []byte) uint64 {
	var c uint64
	for i := range ctrSize {
		c = c<<8 | uint64(b[i])
	}
	return c
}

// replayWindow accepts each counter once: anything newer than the newest
// seen, or one of the 64 before it not seen yet (frames may be reordered).
type replayWindow struct {
	top  uint64
	bits uint64 // bit i: top-i was seen
	any  bool
}

func (w *replayWindow) check(c uint64) bool {
	switch {
	case !w.any || c > w.top:
		return true
	case w.top-c >= 64:
		return false
	}
	return w.bits&(1<<(w.top-c)) == 0
}

func (w *replayWindow) mark(c uint64) {
	switch {
	case !w.any:
		w.top, w.bits, w.any = c, 1, true
	case c > w.top:
		shift := c - w.top
		if shift >= 64 {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.bits |= 1
		w.top = c
	default:
		w.bits |= 1 << (w.top - c)
	}
}

// unicast builds a unicast frame: header, body, room for the tag.
func unicast(typ byte, src, dst hint, body []byte) []byte {
	f := make([]byte, headerSize, headerSize+len(body)+tagSize)
	f[0] = version<<4 | typ
	copy(f[1:], src[:])
	copy(f[1+hintSize:], dst[:])
	f = append(f, body...)
	return append(f, make([]byte, tagSize)...)
}

// seal sets the counter and tag of a unicast frame built by unicast.
func seal(f []byte, ctr uint64, key [32]byte) {
	putCtr(f[1+2*hintSize:], ctr)
	t := tag(key, f[:len(f)-tagSize])
	copy(f[len(f)-tagSize:], t[:])
}

// frameHead is the parsed start of a frame.
type frameHead struct {
	typ      byte
	src, dst hint
	ctr      uint64
}

func parseHead(f []byte) (frameHead, error) {
	var h frameHead
	if len(f) < 1 || f[0]>>4 != version {
		return h, errFrame
	}
	h.typ = f[0] & 0x0f
	if h.typ == typeHello {
		if len(f) < helloHead {
			return h, errFrame
		}
		copy(h.src[:], f[1:])
		h.ctr = getCtr(f[1+hintSize:])
		return h, nil
	}
	if len(f) < headerSize+tagSize {
		return h, errFrame
	}
	copy(h.src[:], f[1:])
	copy(h.dst[:], f[1+hintSize:])
	h.ctr = getCtr(f[1+2*hintSize:])
	return h, nil
}

// checkTag verifies a unicast frame's tag.
func checkTag(f []byte, key [32]byte) bool {
	t := tag(key, f[:len(f)-tagSize])
	return hmac.Equal(t[:], f[len(f)-tagSize:])
}

// buildHello returns a HELLO: type, src, counter, digest, then per peer
// its hint and the tag of the bytes before the tags under the pair key.
func buildHello(src hint, ctr uint64, digest [digestSize]byte, peers []*peer) []byte {
	f := make([]byte, helloHead, helloHead+len(peers)*helloTag)
	f[0] = version<<4 | typeHello
	copy(f[1:], src[:])
	putCtr(f[1+hintSize:], ctr)
	copy(f[1+hintSize+ctrSize:], digest[:])
	head := f[:helloHead:helloHead]
	for _, p := range peers {
		t := tag(p.key, head)
		f = append(f, p.hint[:]...)
		f = append(f, t[:]...)
	}
	return f
}

// helloTagFor finds the tags addressed to me in a HELLO.
func helloTagsFor(f []byte, me hint) (head []byte, tags [][]byte, digest [digestSize]byte, err error) {
	if len(f) < helloHead || (len(f)-helloHead)%helloTag != 0 {
		return nil, nil, digest, errFrame
	}
	head = f[:helloHead]
	digest = [digestSize]byte(f[1+hintSize+ctrSize:])
	for p := f[helloHead:]; len(p) > 0; p = p[helloTag:] {
		if hint(p[:hintSize]) == me {
			tags = append(tags, p[hintSize:helloTag])
		}
	}
	return head, tags, digest, nil
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// IsHello reports whether f is a HELLO frame (for counting traffic).
func IsHello(f []byte) bool { return len(f) > 0 && f[0] == version<<4|typeHello }
