// Package conformance locates the Provara reference data that backpack's
// tests check against: SPEC.md's vectors, the two reference backpacks and
// the facts the reference computed about them (expected.json).
//
// The data lives outside the repository, in ../shared/provara relative to
// the module root, or wherever BACKPACK_CONFORMANCE_DIR points. It is never
// copied into the project.
package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// EnvVar overrides the location of the reference data.
const EnvVar = "BACKPACK_CONFORMANCE_DIR"

// Dir returns the reference data directory, or skips the test with a clear
// message when it is absent.
func Dir(tb testing.TB) string {
	tb.Helper()
	dir, err := Find()
	if err != nil {
		tb.Skipf("conformance data not found (%v): set %s or place the Provara reference data in ../shared/provara beside the repository", err, EnvVar)
	}
	return dir
}

// Find returns the reference data directory without a testing.TB.
func Find() (string, error) {
	if d := os.Getenv(EnvVar); d != "" {
		if _, err := os.Stat(filepath.Join(d, "SPEC.md")); err != nil {
			return "", err
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			p := filepath.Join(filepath.Dir(d), "shared", "provara")
			if _, err := os.Stat(filepath.Join(p, "SPEC.md")); err != nil {
				return "", err
			}
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", os.ErrNotExist
		}
	}
}

// Path returns the path of a file in the reference data (skipping the test
// when the data is absent).
func Path(tb testing.TB, elem ...string) string {
	tb.Helper()
	return filepath.Join(append([]string{Dir(tb)}, elem...)...)
}

// ReadFile returns the bytes of a reference data file.
func ReadFile(tb testing.TB, elem ...string) []byte {
	tb.Helper()
	b, err := os.ReadFile(Path(tb, elem...))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// DecodeStd decodes a reference data file with encoding/json into v. Use it
// only for the parts of the files that carry no JSON values whose exact
// number types matter (hex strings, texts, counts); parse those with canon.
func DecodeStd(tb testing.TB, v any, elem ...string) {
	tb.Helper()
	if err := json.Unmarshal(ReadFile(tb, elem...), v); err != nil {
		tb.Fatal(err)
	}
}
