package bundles

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/backpack-field/backpack/internal/canon"
)

// Static files a full export carries (the header's files member), so that
// a person can make a new device of the backpack from the bundle alone
// (backpack join BUNDLE DIR). They are the backpack's non-secret files
// that the event log cannot rebuild: identity/genesis.json,
// identity/keys.json and the policies. Like everything in a bundle they are
// not trusted because they are there: only a person joining the backpack
// from this bundle uses them, having chosen to.

// Paths of the files a full export must carry.
const (
	GenesisFile = "identity/genesis.json"
	KeysFile    = "identity/keys.json"
	// PoliciesDir is the directory whose files may travel too.
	PoliciesDir = "policies/"
)

// maxFilePathLen and maxFilePathDepth bound a carried file's path.
const (
	maxFilePathLen   = 200
	maxFilePathDepth = 4
)

// File is one carried static file.
type File struct {
	// Path is relative to the backpack root, with "/" separators: one of
	// GenesisFile, KeysFile, or a file under PoliciesDir (CheckFilePath).
	Path string
	// Data is the file's bytes, exactly.
	Data []byte
}

// CheckFilePath says why p may not travel in a bundle, or returns nil.
// Allowed are identity/genesis.json, identity/keys.json and files under
// policies/ (at most 4 levels deep) whose path elements are made of ASCII
// letters, digits, '.', '_' and '-', do not start with '.' and do not name
// a private key (no element contains "private", in any case).
func CheckFilePath(p string) error {
	if p == GenesisFile || p == KeysFile {
		return nil
	}
	if len(p) > maxFilePathLen {
		return fmt.Errorf("path longer than %d bytes", maxFilePathLen)
	}
	rest, ok := strings.CutPrefix(p, PoliciesDir)
	if !ok || rest == "" {
		return errors.New("not identity/genesis.json, identity/keys.json or a file under policies/")
	}
	elems := strings.Split(rest, "/")
	if len(elems) > maxFilePathDepth {
		return fmt.Errorf("more than %d levels under policies/", maxFilePathDepth)
	}
	for _, el := range elems {
		if el == "" || el[0] == '.' {
			return errors.New("empty path element or one starting with '.'")
		}
		for _, c := range []byte(el) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("byte %q is not allowed in a path", c)
			}
		}
		if strings.Contains(strings.ToLower(el), "private") {
			return errors.New("names a private key; private keys never travel in a bundle")
		}
	}
	return nil
}

// filesValue returns the files member: an object from path to the
// standard, padded base64 of the bytes.
func filesValue(files []File) canon.Value {
	ms := make([]canon.Member, len(files))
	for i, f := range files {
		ms[i] = canon.Member{Key: f.Path, Value: canon.StringValue(base64.StdEncoding.EncodeToString(f.Data))}
	}
	return canon.OrderedObject(ms...)
}

// checkFiles checks a set of carried files against the rules and lim,
// which has its defaults. Problems match ErrBadHeader or ErrTooLarge.
func checkFiles(files []File, lim Limits) *FormatError {
	bad := func(sentinel error, format string, args ...any) *FormatError {
		return formatErr(sentinel, 0, 1, nil, format, args...)
	}
	if len(files) > lim.MaxFiles {
		return bad(ErrTooLarge, "files: %d files, more than the limit of %d", len(files), lim.MaxFiles)
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := CheckFilePath(f.Path); err != nil {
			return bad(ErrBadHeader, "files: %q: %v", f.Path, err)
		}
		if seen[f.Path] {
			return bad(ErrBadHeader, "files: %q twice", f.Path)
		}
		seen[f.Path] = true
		if len(f.Data) > lim.MaxFileSize {
			return bad(ErrTooLarge, "files: %q is %d bytes, more than the limit of %d", f.Path, len(f.Data), lim.MaxFileSize)
		}
	}
	for _, need := range []string{GenesisFile, KeysFile} {
		if !seen[need] {
			return bad(ErrBadHeader, "files: %s is missing (a full export carries it)", need)
		}
	}
	return nil
}

// sortedFiles returns a copy of files sorted by path (the canonical order
// of the files member: paths are ASCII, so byte order is code point order).
func sortedFiles(files []File) []File {
	out := slices.Clone(files)
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// parseFiles reads the files member (already parsed, within the header
// size limit) and checks it.
func parseFiles(v canon.Value, lim Limits) ([]File, *FormatError) {
	if v.Kind() != canon.Object {
		return nil, formatErr(ErrBadHeader, 0, 1, nil, "files must be an object (it is a JSON %s)", v.Kind())
	}
	ms := v.Members()
	if len(ms) > lim.MaxFiles {
		return nil, formatErr(ErrTooLarge, 0, 1, nil, "files: %d files, more than the limit of %d", len(ms), lim.MaxFiles)
	}
	files := make([]File, 0, len(ms))
	for _, m := range ms {
		if m.Value.Kind() != canon.String {
			return nil, formatErr(ErrBadHeader, 0, 1, nil, "files: %q must be a base64 string", m.Key)
		}
		s := m.Value.Str()
		if base64.StdEncoding.DecodedLen(len(s)) > lim.MaxFileSize+2 {
			return nil, formatErr(ErrTooLarge, 0, 1, nil, "files: %q is more than the limit of %d bytes", m.Key, lim.MaxFileSize)
		}
		data, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, formatErr(ErrBadHeader, 0, 1, err, "files: %q is not standard padded base64", m.Key)
		}
		files = append(files, File{Path: m.Key, Data: data})
	}
	if ferr := checkFiles(files, lim); ferr != nil {
		return nil, ferr
	}
	return sortedFiles(files), nil
}
