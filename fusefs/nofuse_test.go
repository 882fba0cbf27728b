package fusefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/store"
)

// TestMountWithoutFUSE: without the FUSE device, Mount says so and what
// to do, before touching the mount point.
func TestMountWithoutFUSE(t *testing.T) {
	base := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(base, "state"))
	dir := filepath.Join(base, "bp")
	if _, err := store.Init(context.Background(), dir, store.InitOptions{KeyFile: filepath.Join(base, "key.json")}); err != nil {
		t.Fatal(err)
	}
	old := fuseDevice
	fuseDevice = filepath.Join(base, "no-such-device")
	defer func() { fuseDevice = old }()
	mnt := filepath.Join(base, "mnt")
	os.Mkdir(mnt, 0o755)
	_, err := Mount(context.Background(), Options{Dir: dir, Mountpoint: mnt})
	if !errors.Is(err, ErrNoFUSE) || !strings.Contains(err.Error(), "modprobe fuse") {
		t.Fatalf("Mount without /dev/fuse: %v", err)
	}
}
