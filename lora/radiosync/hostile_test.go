package radiosync_test

import (
	crand "crypto/rand"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosim"
	"github.com/backpack-field/backpack/lora/radiosync"
)

// TestHostileSenderChangesNothing converges two devices, then feeds
// device 0 garbage, frames with forged tags, a stranger's frames, replays,
// and a batch from an authenticated peer carrying forged events; its
// state and frontier must not change.
func TestHostileSenderChangesNothing(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", filepath.Join(t.TempDir(), "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(t.TempDir(), "config"))
	s, err := radiosim.New(t.Context(), radiosim.Config{Devices: 2, Seed: 9, Offline: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.Run(t.Context())
	if err != nil || !rep.Converged {
		t.Fatalf("setup did not converge: %v %+v", err, rep)
	}
	bp0, bp1 := s.Backpack(0), s.Backpack(1)
	n0, n1 := s.Node(0), s.Node(1)
	hash0, err := bp0.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	front0 := bp0.Frontier().Digest()
	now := radiosim.Start.Add(s.Now() + time.Hour)
	deliver := func(f []byte) { n0.HandleFrame(t.Context(), now, lora.Frame{Payload: f}) }
	before := n0.Counters()

	// Garbage of every length.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		f := make([]byte, i%256)
		for j := range f {
			f[j] = byte(r.Uint32())
		}
		if i%3 == 0 && len(f) > 0 {
			f[0] = 0x20 | byte(i%5) // a valid version and type
		}
		deliver(f)
	}
	// A peer's frame with a byte changed: the tag no longer matches.
	f := radiosync.SealFor(n1, bp0.KeyID(), radiosync.TypeAck, []byte{0, 200, 1, 1})
	f[11] ^= 1
	deliver(f)
	// A stranger's frames, with the key it would share with device 0.
	stranger, err := bplog.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	deliver(radiosync.StrangerFrame(n0, stranger.Key, radiosync.TypeFrontier, []byte{0}))
	// A replay.
	ack := radiosync.SealFor(n1, bp0.KeyID(), radiosync.TypeAck, []byte{0, 201, 1, 1})
	deliver(ack)
	deliver(ack)

	mid := n0.Counters()
	if mid.AuthFailures-before.AuthFailures < 2 || mid.Replays-before.Replays != 1 || mid.BadFrames == before.BadFrames {
		t.Errorf("counters after the attack: %+v (before %+v)", mid, before)
	}

	// An authenticated peer sends forged events: one of its own with the
	// payload changed after signing, one signed by a key the backpack does
	// not know, and one with a broken signature.
	lines, err := bp1.Delta(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	last := lines[len(lines)-1]
	e, err := bplog.Parse(last)
	if err != nil {
		t.Fatal(err)
	}
	tampered, err := canon.Encode(e.Value.With("payload", canon.ObjectValue(canon.Member{Key: "subject", Value: canon.StringValue("forged")})))
	if err != nil {
		t.Fatal(err)
	}
	var body canon.ObjectBuilder
	body.Set("type", canon.StringValue("OBSERVATION")).Set("actor", canon.StringValue(e.Actor)).
		Set("prev_event_hash", canon.StringValue(e.ID)).Set("timestamp_utc", canon.StringValue("2026-03-02T00:00:00+00:00")).
		Set("payload", canon.ObjectValue(canon.Member{Key: "subject", Value: canon.StringValue("intruder")}))
	_, unknown, err := stranger.Signer().Seal(body.Value())
	if err != nil {
		t.Fatal(err)
	}
	badSig := []byte(string(last))
	for i := range len(badSig) - 10 {
		if string(badSig[i:i+7]) == `"sig":"` {
			badSig[i+8] ^= 1 // stays base64, no longer the signature
			break
		}
	}
	var codec radiosync.Codec
	blob, err := codec.Encode([][]byte{tampered, unknown, badSig}, radiosync.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	room := 255 - radiosync.DataOverhead
	total := (len(blob) + room - 1) / room
	for i := range total {
		frag := append([]byte{0, 77, byte(i), byte(total)}, blob[i*room:min(len(blob), (i+1)*room)]...)
		deliver(radiosync.SealFor(n1, bp0.KeyID(), radiosync.TypeData, frag))
	}
	after := n0.Counters()
	if after.EventsReceived-mid.EventsReceived != 3 || after.EventsApplied != mid.EventsApplied {
		t.Errorf("forged batch: received %d, applied %d", after.EventsReceived-mid.EventsReceived, after.EventsApplied-mid.EventsApplied)
	}
	if h, err := bp0.StateHash(); err != nil || h != hash0 {
		t.Errorf("state hash changed: %s -> %s (%v)", hash0, h, err)
	}
	if bp0.Frontier().Digest() != front0 {
		t.Error("frontier changed")
	}
	held, err := bp0.Held("quarantine")
	if err != nil {
		t.Fatal(err)
	}
	if len(held) < 2 {
		t.Errorf("the forged events were not kept in the quarantine: %d held", len(held))
	}
}
