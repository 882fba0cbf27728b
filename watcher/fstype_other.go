//go:build !linux

package watcher

// detectFS knows filesystem types only on Linux; elsewhere every root is
// watched unless Options.ForcePoll is set.
func detectFS(dir string) (name, why string, err error) {
	return "unknown", "", nil
}
