package watcher

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fsInfo names one filesystem type, by its statfs(2) f_type magic number
// (linux/magic.h), and says why inotify cannot be trusted on it.
type fsInfo struct {
	magic uint32
	name  string
	// why is empty for filesystems where inotify sees every write;
	// otherwise the root is polled and why says what inotify misses.
	why string
}

const (
	whyRemote = "inotify cannot see other machines' writes"
	whyFUSE   = "inotify cannot see writes the FUSE server makes itself (sshfs, rclone mount, GlusterFS, virtiofs)"
	whyHost   = "inotify cannot see the host's writes to a shared folder"
)

// fsTypes lists the filesystems backpack knows by name. Those with a
// reason are polled; an unknown type is assumed local and watched.
var fsTypes = []fsInfo{
	// Network, cluster and user-space filesystems: polled.
	{0x6969, "nfs", whyRemote},
	{0x517b, "smb", whyRemote},
	{0xff534d42, "cifs", whyRemote},
	{0xfe534d42, "smb2", whyRemote},
	{0x564c, "ncp", whyRemote},
	{0x5346414f, "afs", whyRemote},
	{0x6b414653, "kafs", whyRemote},
	{0x00c36400, "ceph", whyRemote},
	{0x73757245, "coda", whyRemote},
	{0x01161970, "gfs2", whyRemote},
	{0x7461636f, "ocfs2", whyRemote},
	{0x0bd00bd0, "lustre", whyRemote},
	{0x47504653, "gpfs", whyRemote},
	{0x65735546, "fuse", whyFUSE},
	{0x01021997, "9p", whyHost},
	{0x786f4256, "vboxsf", whyHost},
	{0x00c0ffee, "hostfs", whyHost},

	// Local filesystems: watched with inotify.
	{0xef53, "ext4", ""}, // also ext2 and ext3
	{0x01021994, "tmpfs", ""},
	{0x858458f6, "ramfs", ""},
	{0x9123683e, "btrfs", ""},
	{0x58465342, "xfs", ""},
	{0xf2f52010, "f2fs", ""},
	{0x2fc12fc1, "zfs", ""},
	{0xca451a4e, "bcachefs", ""},
	{0x52654973, "reiserfs", ""},
	{0x3153464a, "jfs", ""},
	{0x3434, "nilfs", ""},
	{0x794c7630, "overlayfs", ""},
	{0xf15f, "ecryptfs", ""},
	{0x4d44, "vfat", ""}, // also msdos: most USB sticks
	{0x2011bab0, "exfat", ""},
	{0x5346544e, "ntfs", ""},
	{0x482b, "hfsplus", ""},
	{0x15013346, "udf", ""},
	{0x9660, "iso9660", ""},
	{0x73717368, "squashfs", ""},
	{0xe0f5e1e2, "erofs", ""},
}

// classify names the filesystem with the given f_type and returns why it
// must be polled, or "" if inotify sees its writes. Unknown types are
// named by their hex magic number and watched.
func classify(magic uint32) (name, why string) {
	for _, f := range fsTypes {
		if f.magic == magic {
			return f.name, f.why
		}
	}
	return fmt.Sprintf("0x%x", magic), ""
}

// detectFS returns the filesystem type of dir from statfs(2) alone (no
// /proc/self/mountinfo), and why it must be polled, or "".
func detectFS(dir string) (name, why string, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown", "", fmt.Errorf("statfs %s: %w", dir, err)
	}
	// f_type is a 32-bit magic number; Statfs_t.Type is signed and of
	// different widths per architecture.
	name, why = classify(uint32(st.Type))
	return name, why, nil
}
