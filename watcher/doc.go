// Package watcher turns filesystem activity under a few directory trees
// into debounced "this file is ready" notices. It knows nothing of
// backpacks, bundles or events: the agent uses it to follow the backpack's
// own events/ directory and the peer drop folders (a USB stick, a shared
// network drive, a Syncthing or rclone folder) and decides itself what a
// file means.
//
// # Roots, depth and directories
//
// A root is a directory added with [Watcher.Add] and a depth: depth 0
// watches only the root's own files, depth 1 also the files of its
// immediate subdirectories, and so on; a negative depth has no limit.
// Watches go on directories, never on files, so a file replaced by
// rename keeps being seen. Subdirectories that appear within the depth
// are watched (and scanned, since files may have landed before the watch
// was in place) and those that disappear are dropped. Only regular files
// are reported; symbolic links are neither followed nor reported.
//
// # Readiness
//
// A file is reported once it has been quiet for the settle period
// ([Options.Settle], 200 ms by default) and its size and modification
// time did not move across that period. A burst of writes thus becomes
// one notice, and a file that keeps growing is reported only when it
// stops (or pauses for longer than the settle period: writers that pause
// should use a partial name and rename, which every sync tool does). A
// file that never goes quiet, such as a busy log, is reported every
// [Options.MaxWait] if that is set.
// Partial and temporary names are skipped by [Options.Ignore], which
// defaults to [DefaultIgnore]; a write by temp file + rename is therefore
// reported once, under its final name.
//
// A notice is sent when what the watcher sees (size, modification time,
// inode) differs from what it last reported for that path, so rescans
// never repeat a notice for an unchanged file. A file that disappears
// after being reported gets a notice with Removed set.
//
// # Rescans, polling and status
//
// Every root is scanned when it is added (cause "start"), every
// [Options.Rescan] (cause "rescan", 5 minutes by default), on
// [Watcher.RescanNow], and after the kernel's event queue overflowed
// (cause "overflow"; fsnotify reports [fsnotify.ErrEventOverflow] and
// events were lost).
//
// inotify sees only writes made through this machine's kernel. A root on
// a network or FUSE filesystem (NFS, SMB/CIFS, sshfs, rclone mount,
// 9p and VM shared folders, AFS, Ceph, ...), detected from statfs(2)'s
// f_type, is polled every [Options.Poll] instead (2 s by default), and
// so is a root whose inotify watch could not be added (for example when
// fs.inotify.max_user_watches is exhausted: mode "degraded", retried at
// each rescan), every root with [Options.ForcePoll], and a root added
// with [Watcher.AddPolled]. A root whose directory does not exist (a
// USB stick not plugged in) is "missing": its files are reported
// removed, and it is looked for again every Poll.
// [Watcher.Status] says, per root, which of these applies and why.
//
// # Delivery
//
// Notices arrive on [Watcher.Changes]. They are never dropped and never
// block the reading of filesystem events: while the consumer is busy,
// notices wait in a pending set with one entry per path, so a path that
// changes again before it is delivered is delivered once, with its
// latest state. [Watcher.Run] owns all the work on one goroutine (plus
// fsnotify's reader) and closes the channel when it returns.
package watcher
