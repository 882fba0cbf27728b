package fusefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

// TestMountWithoutFUSE: without the FUSE device, Mount says so and what
// to do, before touching the mount point or the source.
func TestMountWithoutFUSE(t *testing.T) {
	base := t.TempDir()
	old := fuseDevice
	fuseDevice = filepath.Join(base, "no-such-device")
	defer func() { fuseDevice = old }()
	mnt := filepath.Join(base, "mnt")
	os.Mkdir(mnt, 0o755)
	_, err := Mount(context.Background(), Options{Dir: base, Mountpoint: mnt})
	if !errors.Is(err, ErrNoFUSE) || !strings.Contains(err.Error(), "modprobe fuse") {
		t.Fatalf("Mount without /dev/fuse: %v", err)
	}
}

// FuzzNewBody: a new/ file never panics the parser, and what it accepts
// is an event body with a subject and predicate that encodes canonically.
func FuzzNewBody(f *testing.F) {
	for _, s := range []string{
		`{"subject":"a","predicate":"b","value":1}`,
		`{"subject":"a","predicate":"b","value":{"x":[1,2.5]},"confidence":0.5,"namespace":"local","type":"ASSERTION"}`,
		`{"subject":"a","predicate":"b","type":"RETRACTION"}`,
		`{"subject":"a"}`, `[]`, `nul`, `{"subject":"a","predicate":"b","value":1,"confidence":1e999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := newBody(data)
		if err != nil {
			return
		}
		p := v.Field("payload")
		if p.Field("subject").Str() == "" || p.Field("predicate").Str() == "" {
			t.Fatalf("accepted without subject or predicate: %q", data)
		}
		if _, err := canon.Encode(v); err != nil {
			t.Fatalf("accepted a body that does not encode: %q: %v", data, err)
		}
	})
}
