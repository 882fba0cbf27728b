package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Paths inside a backpack, relative to its root.
const (
	EventsPath       = "events/events.ndjson"
	GenesisPath      = "identity/genesis.json"
	KeysPath         = "identity/keys.json"
	PrivateKeysPath  = "identity/private_keys.json"
	ManifestPath     = "manifest.json"
	MerkleRootPath   = "merkle_root.txt"
	ManifestSigPath  = "manifest.sig"
	CachePath        = "state/backpack_cache.bin"
	CacheIndexPath   = "state/backpack_index.bin"
	CacheBasePath    = "state/backpack_base.bin"
	CurrentStatePath = "state/current_state.json"
	CheckpointsDir   = "checkpoints"
)

// requiredDirs are the directories the reference's compliance suite
// requires (test_01).
var requiredDirs = []string{"identity", "events", "state", "artifacts", "artifacts/cas", "policies", "policies/ontology"}

// DeviceDir returns the directory for device-local state of the replica
// in backpackDir (quarantine, pending events, fork records, torn tails),
// outside the backpack so that the backpack stays a clean Provara
// directory: $XDG_STATE_HOME/backpack/<uid>-<hash of the replica's
// absolute path>, defaulting to ~/.local/state/backpack/.... Two replicas
// of one backpack on one machine (copies, sessions) keep apart state.
func DeviceDir(uid, backpackDir string) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no XDG_STATE_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	abs, err := filepath.Abs(backpackDir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(base, "backpack", safeName(uid)+"-"+hex.EncodeToString(sum[:4])), nil
}

// KeyDir returns where init puts device key files by default:
// $XDG_CONFIG_HOME/backpack/keys, defaulting to ~/.config/backpack/keys.
func KeyDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no XDG_CONFIG_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "backpack", "keys"), nil
}

// DefaultKeyPath is the key file init writes for a backpack uid.
func DefaultKeyPath(uid string) (string, error) {
	d, err := KeyDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, safeName(uid)+".json"), nil
}

// SafeName returns s when it is usable as a file name (ASCII letters,
// digits, '-', '_' and '.', not starting with '.', at most 100 bytes),
// else "uid-" + 24 hex digits of its SHA-256: how device directories and
// peer folders name a backpack by its uid.
func SafeName(s string) string { return safeName(s) }

func safeName(s string) string {
	ok := s != "" && len(s) <= 100 && s[0] != '.'
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "uid-" + hex.EncodeToString(sum[:12])
}

// writeFileAtomic writes data to path through a temp file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory, so
// a crash leaves either the old or the new file.
// WriteFileAtomic writes data to path crash-safely: a synced temp file
// beside it (named ".<name>.tmp-*"), renamed over path, then the
// directory synced. Readers see the old file or the new one, whole.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileAtomic(path, data, perm)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	commit, err := stageFile(path, data, perm)
	if err != nil {
		return err
	}
	return commit()
}

// stageFile is the first half of writeFileAtomic: it writes data to a
// synced temp file beside path and returns the second half, which renames
// it over path and syncs the directory.
func stageFile(path string, data []byte, perm os.FileMode) (func() error, error) {
	tmp, err := stageTemp(path, perm, data)
	if err != nil {
		return nil, err
	}
	return func() error {
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return err
		}
		return syncDir(filepath.Dir(path))
	}, nil
}

// stageTemp writes parts, one after the other, to a synced temp file
// beside path (named so that cleanTemps finds it) and returns its name.
func stageTemp(path string, perm os.FileMode, parts ...[]byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	for _, p := range parts {
		if _, err = f.Write(p); err != nil {
			break
		}
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// fileWrite is one file for writeFilesAtomic.
type fileWrite struct {
	path string
	data []byte
	perm os.FileMode
}

// writeFilesAtomic replaces several files the way writeFileAtomic does,
// but fsyncs their temp files concurrently (the file system can commit
// them together), then renames each. The directory is not fsynced: a
// crash may undo a rename, leaving the old file, and a crash leaves every
// file either old or new, though not necessarily all of them new. Callers
// use it only for derived files, which every writer re-checks against the
// log when it opens the backpack and rebuilds when stale.
func writeFilesAtomic(files []fileWrite) error {
	tmps := make([]string, len(files))
	defer func() {
		for _, t := range tmps {
			if t != "" {
				os.Remove(t)
			}
		}
	}()
	errs := make(chan error, len(files))
	for i, fw := range files {
		f, err := os.CreateTemp(filepath.Dir(fw.path), "."+filepath.Base(fw.path)+".tmp-*")
		if err != nil {
			return err
		}
		tmps[i] = f.Name()
		go func() {
			_, err := f.Write(fw.data)
			if err == nil {
				err = f.Chmod(fw.perm)
			}
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			errs <- err
		}()
	}
	var first error
	for range files {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	for i, fw := range files {
		if err := os.Rename(tmps[i], fw.path); err != nil {
			return err
		}
		tmps[i] = ""
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
