//go:build !unix

package watcher

import "io/fs"

func inode(fi fs.FileInfo) uint64 { return 0 }
