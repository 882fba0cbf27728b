package fusefs

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// fusermount returns the fusermount helper on PATH, or "".
func fusermount() string {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// prepareMountpoint checks the mount point, and unmounts a stale FUSE
// mount there: one whose server died ("transport endpoint is not
// connected"). A live mount is refused with ErrMounted.
func prepareMountpoint(mnt string, log *slog.Logger) error {
	_, err := os.Stat(mnt)
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		log.Warn("mount: cleaning a stale mount left by a crash", "mountpoint", mnt)
		if err := lazyUnmount(mnt); err != nil {
			return fmt.Errorf("fusefs: %s holds a stale mount that could not be removed: %w (try: fusermount3 -u -z %s)", mnt, err, mnt)
		}
		_, err = os.Stat(mnt)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fusefs: mount point %s does not exist (create an empty directory)", mnt)
		}
		return fmt.Errorf("fusefs: mount point: %w", err)
	}
	if mounted, fstype := isMountpoint(mnt); mounted {
		return fmt.Errorf("%w: %s is a mount point already (%s); unmount it first", ErrMounted, mnt, fstype)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		return fmt.Errorf("fusefs: mount point: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("fusefs: mount point %s is not empty", mnt)
	}
	return nil
}

// lazyUnmount detaches the mount at mnt: unmount(2) with MNT_DETACH as
// root, else fusermount3 -u -z.
func lazyUnmount(mnt string) error {
	err := syscall.Unmount(mnt, syscall.MNT_DETACH)
	if err == nil || errors.Is(err, syscall.EINVAL) && !isMounted(mnt) {
		return nil
	}
	if fm := fusermount(); fm != "" {
		out, ferr := exec.Command(fm, "-u", "-z", mnt).CombinedOutput()
		if ferr == nil {
			return nil
		}
		return fmt.Errorf("%v; %s -u -z: %v: %s", err, fm, ferr, strings.TrimSpace(string(out)))
	}
	return err
}

func isMounted(mnt string) bool {
	m, _ := isMountpoint(mnt)
	return m
}

// isMountpoint reports whether mnt is a mount point in this mount
// namespace, and its file system type, from /proc/self/mountinfo.
func isMountpoint(mnt string) (bool, string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, ""
	}
	defer f.Close()
	clean := filepath.Clean(mnt)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != clean {
			continue
		}
		fstype := ""
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
			}
		}
		return true, fstype
	}
	return false, ""
}

// MountType returns the file system type of the mount at mnt ("" when
// nothing is mounted there): "fuse.backpack" for a backpack mount.
func MountType(mnt string) string {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return ""
	}
	_, t := isMountpoint(abs)
	return t
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
