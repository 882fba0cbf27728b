package watcher

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFSTypeTable(t *testing.T) {
	// Cross-check the hand-written magic numbers against linux/magic.h as
	// golang.org/x/sys knows it, where it does.
	want := map[string]uint32{
		"nfs":       unix.NFS_SUPER_MAGIC,
		"smb":       unix.SMB_SUPER_MAGIC,
		"cifs":      unix.CIFS_SUPER_MAGIC,
		"smb2":      unix.SMB2_SUPER_MAGIC,
		"ncp":       unix.NCP_SUPER_MAGIC,
		"afs":       unix.AFS_SUPER_MAGIC,
		"kafs":      unix.AFS_FS_MAGIC,
		"ceph":      unix.CEPH_SUPER_MAGIC,
		"coda":      unix.CODA_SUPER_MAGIC,
		"ocfs2":     unix.OCFS2_SUPER_MAGIC,
		"fuse":      unix.FUSE_SUPER_MAGIC,
		"9p":        unix.V9FS_MAGIC,
		"hostfs":    unix.HOSTFS_SUPER_MAGIC,
		"ext4":      unix.EXT4_SUPER_MAGIC,
		"tmpfs":     unix.TMPFS_MAGIC,
		"ramfs":     unix.RAMFS_MAGIC,
		"btrfs":     unix.BTRFS_SUPER_MAGIC,
		"xfs":       unix.XFS_SUPER_MAGIC,
		"f2fs":      unix.F2FS_SUPER_MAGIC,
		"bcachefs":  unix.BCACHEFS_SUPER_MAGIC,
		"reiserfs":  unix.REISERFS_SUPER_MAGIC,
		"nilfs":     unix.NILFS_SUPER_MAGIC,
		"overlayfs": unix.OVERLAYFS_SUPER_MAGIC,
		"ecryptfs":  unix.ECRYPTFS_SUPER_MAGIC,
		"vfat":      unix.MSDOS_SUPER_MAGIC,
		"exfat":     unix.EXFAT_SUPER_MAGIC,
		"udf":       unix.UDF_SUPER_MAGIC,
		"iso9660":   unix.ISOFS_SUPER_MAGIC,
		"squashfs":  unix.SQUASHFS_MAGIC,
		"erofs":     unix.EROFS_SUPER_MAGIC_V1,
	}
	seen := make(map[uint32]string)
	for _, f := range fsTypes {
		if other, dup := seen[f.magic]; dup {
			t.Errorf("magic 0x%x listed for %s and %s", f.magic, other, f.name)
		}
		seen[f.magic] = f.name
		if m, ok := want[f.name]; ok && m != f.magic {
			t.Errorf("%s: magic 0x%x, linux/magic.h says 0x%x", f.name, f.magic, m)
		}
	}
	for name := range want {
		if _, ok := seen[want[name]]; !ok {
			t.Errorf("%s missing from the table", name)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		magic uint32
		name  string
		poll  bool
	}{
		{0x6969, "nfs", true},
		{0xff534d42, "cifs", true},
		{0xfe534d42, "smb2", true},
		{0x517b, "smb", true},
		{0x65735546, "fuse", true}, // sshfs, rclone mount, GlusterFS, our own mounts
		{0x01021997, "9p", true},   // WSL and QEMU shared folders
		{0x786f4256, "vboxsf", true},
		{0x5346414f, "afs", true},
		{0x00c36400, "ceph", true},
		{0x01161970, "gfs2", true},
		{0x0bd00bd0, "lustre", true},
		{0x47504653, "gpfs", true},
		{0xef53, "ext4", false},
		{0x01021994, "tmpfs", false},
		{0x4d44, "vfat", false},
		{0x2011bab0, "exfat", false},
		{0x9123683e, "btrfs", false},
		{0x12345678, "0x12345678", false}, // unknown: watched
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, why := classify(tt.magic)
			if name != tt.name || (why != "") != tt.poll {
				t.Errorf("classify(0x%x) = %q, %q; want %q, poll %v", tt.magic, name, why, tt.name, tt.poll)
			}
			if tt.poll && !strings.HasPrefix(why, "inotify cannot see") {
				t.Errorf("reason %q", why)
			}
		})
	}
}

func TestDetectFS(t *testing.T) {
	// statfs alone, no /proc/self/mountinfo: /proc itself is named by
	// its magic number, which is not in the table.
	name, why, err := detectFS("/proc")
	if err != nil || name != "0x9fa0" || why != "" {
		t.Errorf("detectFS(/proc) = %q, %q, %v", name, why, err)
	}
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	wantName, wantWhy := classify(uint32(st.Type))
	name, why, err = detectFS(dir)
	if err != nil || name != wantName || why != wantWhy {
		t.Errorf("detectFS(%s) = %q, %q, %v; want %q, %q", dir, name, why, err, wantName, wantWhy)
	}
	t.Logf("temp dir: %s", name)
	if _, _, err := detectFS("/does/not/exist"); err == nil {
		t.Error("no error for a missing directory")
	}
}
