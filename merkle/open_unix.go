//go:build unix

package merkle

import "syscall"

// openFlagsRead opens files for reading. O_NONBLOCK makes opening a file
// that was swapped for a named pipe return at once instead of blocking;
// the type check after opening then rejects it.
const openFlagsRead = syscall.O_RDONLY | syscall.O_NONBLOCK
