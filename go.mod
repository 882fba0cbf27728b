module github.com/backpack-field/backpack

go 1.26

require (
	filippo.io/edwards25519 v1.2.0
	github.com/creack/pty v1.1.24
	github.com/fsnotify/fsnotify v1.10.1
	github.com/klauspost/compress v1.20.3
	go.bug.st/serial v1.8.0
	golang.org/x/sys v0.43.0
)

require github.com/hanwen/go-fuse/v2 v2.12.1
