package radiosync_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/backpack-field/backpack/lora"
	"github.com/backpack-field/backpack/lora/radiosim"
	"github.com/backpack-field/backpack/lora/radiosync"
)

func FuzzParseFrontier(f *testing.F) {
	head := []byte{1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	f.Add(append(head, 0))
	f.Add(append(head, 1, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6, 1, 9, 9, 9, 9))
	f.Add(append(head, 2, 1, 2, 3, 4, 0x80))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 0x10, 0, 0, 0, 0x0f, 0, 0, 0, 1, 0x10, 0, 0, 1, 3, 1, 2, 3, 4, 5, 6, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		n, err := radiosync.ParseFrontier(p)
		if err == nil && 14+n*12 > len(p) {
			t.Fatalf("%d actors from %d bytes", n, len(p))
		}
	})
}

// FuzzHandleFrame feeds arbitrary frames to a device, and, with a
// peer's valid tag, arbitrary bodies of each type: nothing may panic and
// the device's log must not change.
func FuzzHandleFrame(f *testing.F) {
	base := f.TempDir()
	f.Setenv("XDG_STATE_HOME", filepath.Join(base, "state"))
	f.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "config"))
	s, err := radiosim.New(f.Context(), radiosim.Config{Devices: 2, Seed: 1, Offline: 2, Dir: filepath.Join(base, "sim")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	bp0 := s.Backpack(0)
	n0, n1 := s.Node(0), s.Node(1)
	n0.Start(radiosim.Start)
	digest := bp0.Frontier().Digest()
	f.Add([]byte{0x21, 1, 2, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6}, false, byte(0))
	f.Add([]byte{0, 3, 0, 1, 0x28}, true, byte(radiosync.TypeData))
	f.Add([]byte{0, 1, 0, 3, 0xff}, true, byte(radiosync.TypeAck))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6, 0}, true, byte(radiosync.TypeFrontier))
	f.Fuzz(func(t *testing.T, p []byte, sealed bool, typ byte) {
		now := radiosim.Start.Add(time.Hour)
		if sealed {
			p = radiosync.SealFor(n1, bp0.KeyID(), typ&0x0f, p)
		}
		n0.HandleFrame(t.Context(), now, lora.Frame{Payload: p})
		n0.Tick(t.Context(), now)
		n0.NextFrame(now)
		if bp0.Frontier().Digest() != digest {
			t.Fatal("a frame changed the log")
		}
	})
}
