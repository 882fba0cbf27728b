package watcher

import "strings"

// partialSuffixes are the endings of names that writers use while a file
// is incomplete. Matched without regard to case.
var partialSuffixes = []string{
	".tmp", ".temp", // editors, backpack's own writers, most tools
	".part",                     // browsers, wget, NNCP
	".partial",                  // rclone (name.partial and name.XXXXXXXX.partial)
	".filepart",                 // WinSCP
	".crdownload",               // Chromium
	".!sync",                    // Resilio Sync
	".nock",                     // NNCP spool files not yet checked
	".swp", ".swx", ".kate-swp", // vim and Kate swap files
}

// DefaultIgnore reports whether a file or directory name (a base name,
// not a path) belongs to a file still being written or to a tool's own
// bookkeeping, so the watcher neither reports nor descends into it:
//
//   - dotfiles and dot-directories: ".name.tmp-123" (backpack's own temp
//     files), ".syncthing.name.tmp", ".stfolder", ".stversions", ".#name"
//     (Emacs locks), ".~lock.name#" (LibreOffice), ".goutputstream-*"
//     (GNOME), ".DS_Store";
//   - names ending in "~" (editor backups) and "~syncthing~*" (Syncthing's
//     temporary files on Windows-style setups), "~$*" (Office owner files);
//   - Emacs auto-saves "#name#";
//   - the endings .tmp, .temp, .part, .partial, .filepart, .crdownload,
//     .!sync, .nock, .swp, .swx and .kate-swp, in any case.
//
// Set [Options.Ignore] to a function that calls DefaultIgnore and adds to
// it, or to one that replaces it.
func DefaultIgnore(name string) bool {
	switch {
	case name == "",
		strings.HasPrefix(name, "."),
		strings.HasSuffix(name, "~"),
		strings.HasPrefix(name, "~syncthing~"),
		strings.HasPrefix(name, "~$"),
		len(name) > 1 && strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"):
		return true
	}
	lower := strings.ToLower(name)
	for _, s := range partialSuffixes {
		if strings.HasSuffix(lower, s) {
			return true
		}
	}
	return false
}
