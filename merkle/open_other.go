//go:build !unix

package merkle

import "os"

// openFlagsRead opens files for reading.
const openFlagsRead = os.O_RDONLY
