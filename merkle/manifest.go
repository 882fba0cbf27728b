package merkle

import (
	"errors"
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
)

// Values of the manifest's version fields written by the reference.
const (
	SpecVersion     = "1.0"         // backpack_spec_version
	ManifestVersion = "manifest.v0" // manifest_version
)

// Manifest is manifest.json (SPEC.md §5.2): the list of every file of a
// backpack with its SHA-256 and size, sorted by path.
//
// A parsed Manifest holds what the file says, even when it is wrong
// (unsorted or duplicated entries, a file_count that does not match, an
// unexpected version), so that Verify can report it and Encode reproduces
// the input. Use NewManifest to build one that is right.
type Manifest struct {
	SpecVersion     string  // backpack_spec_version, "1.0"
	CreatedAtUTC    string  // created_at_utc, generation time (SPEC.md §3.3)
	FileCount       int64   // file_count as stored; len(Files) when built
	Files           []Entry // files, sorted by path
	ManifestVersion string  // manifest_version, "manifest.v0"

	// Extra holds unknown top-level members, in canonical key order. They
	// are kept so that encoding a parsed manifest gives back its bytes,
	// and Verify reports them (nothing in the reference reads them; they
	// are not part of the Merkle root). Builders leave Extra nil.
	Extra []canon.Member
}

// NewManifest returns a manifest of files (which must be sorted by path,
// without duplicates: see SortEntries) created at createdAtUTC, a
// timestamp in the reference's format (internal/pytime.FormatUTC).
func NewManifest(createdAtUTC string, files []Entry) (Manifest, error) {
	if err := CheckOrder(files); err != nil {
		return Manifest{}, err
	}
	return Manifest{
		SpecVersion:     SpecVersion,
		CreatedAtUTC:    createdAtUTC,
		FileCount:       int64(len(files)),
		Files:           files,
		ManifestVersion: ManifestVersion,
	}, nil
}

// Root returns the Merkle root of m's entries. It refuses unsorted or
// duplicated entries (ErrUnsorted); to recompute a stored manifest's root
// the way the reference does, use ReferenceRoot(m.Files).
func (m Manifest) Root() (Hash, error) { return RootOf(m.Files) }

var manifestFields = []string{"backpack_spec_version", "created_at_utc", "file_count", "files", "manifest_version"}

// Value returns m as a canonical JSON object.
func (m Manifest) Value() (canon.Value, error) {
	var b canon.ObjectBuilder
	for _, x := range m.Extra {
		for _, k := range manifestFields {
			if x.Key == k {
				return canon.Value{}, fmt.Errorf("merkle: manifest extra member %q duplicates a field", k)
			}
		}
		b.Set(x.Key, x.Value)
	}
	files := make([]canon.Value, len(m.Files))
	for i, e := range m.Files {
		v, err := e.Value()
		if err != nil {
			return canon.Value{}, err
		}
		files[i] = v
	}
	b.Set("backpack_spec_version", canon.StringValue(m.SpecVersion))
	b.Set("created_at_utc", canon.StringValue(m.CreatedAtUTC))
	b.Set("file_count", canon.IntValue(m.FileCount))
	b.Set("files", canon.ArrayValue(files...))
	b.Set("manifest_version", canon.StringValue(m.ManifestVersion))
	return b.Value(), nil
}

// Encode returns manifest.json's bytes: m's canonical JSON, without a
// trailing newline. It writes m as it is; it does not check that the
// entries are sorted or that FileCount is right (NewManifest does).
func (m Manifest) Encode() ([]byte, error) {
	v, err := m.Value()
	if err != nil {
		return nil, err
	}
	b, err := canon.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("merkle: encode manifest: %w", err)
	}
	return b, nil
}

// Errors returned (wrapped) by ParseManifest and ParseManifestSig.
var (
	// ErrMalformed: the input is not JSON, or a field is missing or has
	// the wrong type. The message names the field.
	ErrMalformed = errors.New("merkle: malformed manifest")
	// ErrTooLarge: the input exceeds a Limits bound.
	ErrTooLarge = errors.New("merkle: manifest exceeds limits")
)

// Limits bound ParseManifest. The zero value means the defaults.
type Limits struct {
	MaxSize  int // largest manifest.json accepted, in bytes (default 64 MiB)
	MaxFiles int // most entries accepted (default 1,000,000)
}

// Default limits. A manifest entry takes about 120 bytes, so 64 MiB holds
// roughly half a million typical entries.
const (
	DefaultMaxSize  = 64 << 20
	DefaultMaxFiles = 1_000_000
)

// maxDepth bounds JSON nesting: entries sit at depth 3, and unknown
// members may nest a little.
const maxDepth = 32

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	return l
}

// ParseManifest parses manifest.json with the default limits.
func ParseManifest(data []byte) (Manifest, error) { return Limits{}.ParseManifest(data) }

// ParseManifest parses manifest.json: JSON as the reference reads it
// (internal/canon), an object with the five fields of SPEC.md §5.2 (all
// required; backpack_spec_version, created_at_utc and manifest_version
// strings, file_count an integer, files an array of objects with a string
// path, a string sha256 and an integer size). Values are kept even when
// wrong, for Verify to report: a version other than "1.0", a file_count
// that does not match, unsorted or duplicated entries, unsafe paths,
// malformed digests, negative sizes. Unknown members are kept in Extra.
//
// Sizes and file_count must fit in int64; a non-integer number (1.0) is
// refused because its canonical text differs from the integer's, so the
// root could not be reproduced from an Entry.
func (l Limits) ParseManifest(data []byte) (Manifest, error) {
	l = l.withDefaults()
	if len(data) > l.MaxSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), l.MaxSize)
	}
	v, err := canon.Limits{MaxSize: l.MaxSize, MaxDepth: maxDepth}.Parse(data)
	if err != nil {
		if errors.Is(err, canon.ErrTooLarge) {
			return Manifest{}, fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return Manifest{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if v.Kind() != canon.Object {
		return Manifest{}, fmt.Errorf("%w: top level is %s, want object", ErrMalformed, v.Kind())
	}
	var m Manifest
	if m.SpecVersion, err = stringField(v, "backpack_spec_version", "backpack_spec_version"); err != nil {
		return Manifest{}, err
	}
	if m.CreatedAtUTC, err = stringField(v, "created_at_utc", "created_at_utc"); err != nil {
		return Manifest{}, err
	}
	if m.ManifestVersion, err = stringField(v, "manifest_version", "manifest_version"); err != nil {
		return Manifest{}, err
	}
	if m.FileCount, err = intField(v, "file_count", "file_count"); err != nil {
		return Manifest{}, err
	}
	files, ok := v.Get("files")
	if !ok {
		return Manifest{}, fmt.Errorf("%w: missing files", ErrMalformed)
	}
	if files.Kind() != canon.Array {
		return Manifest{}, fmt.Errorf("%w: files is %s, want array", ErrMalformed, files.Kind())
	}
	if files.Len() > l.MaxFiles {
		return Manifest{}, fmt.Errorf("%w: %d files, limit %d", ErrTooLarge, files.Len(), l.MaxFiles)
	}
	m.Files = make([]Entry, files.Len())
	for i := range m.Files {
		if m.Files[i], err = parseEntry(files.Index(i), fmt.Sprintf("files[%d]", i)); err != nil {
			return Manifest{}, err
		}
	}
	m.Extra = extraMembers(v, manifestFields...)
	return m, nil
}

// parseEntry parses the entry called name (for messages: "files[3]").
func parseEntry(v canon.Value, name string) (Entry, error) {
	if v.Kind() != canon.Object {
		return Entry{}, fmt.Errorf("%w: %s is %s, want object", ErrMalformed, name, v.Kind())
	}
	var e Entry
	var err error
	if e.Path, err = stringField(v, "path", name+".path"); err != nil {
		return Entry{}, err
	}
	if e.SHA256, err = stringField(v, "sha256", name+".sha256"); err != nil {
		return Entry{}, err
	}
	if e.Size, err = intField(v, "size", name+".size"); err != nil {
		return Entry{}, err
	}
	e.Extra = extraMembers(v, "path", "sha256", "size")
	return e, nil
}

// stringField returns v's member key, which must be a string; name is
// the member's name in messages.
func stringField(v canon.Value, key, name string) (string, error) {
	f, ok := v.Get(key)
	if !ok {
		return "", fmt.Errorf("%w: missing %s", ErrMalformed, name)
	}
	if f.Kind() != canon.String {
		return "", fmt.Errorf("%w: %s is %s, want string", ErrMalformed, name, f.Kind())
	}
	return f.Str(), nil
}

// intField returns v's member key, which must be an integer that fits in
// int64; name is the member's name in messages.
func intField(v canon.Value, key, name string) (int64, error) {
	f, ok := v.Get(key)
	if !ok {
		return 0, fmt.Errorf("%w: missing %s", ErrMalformed, name)
	}
	if f.Kind() != canon.Int {
		return 0, fmt.Errorf("%w: %s is %s, want integer", ErrMalformed, name, f.Kind())
	}
	n, ok := f.Int64()
	if !ok {
		return 0, fmt.Errorf("%w: %s %s does not fit in 64 bits", ErrMalformed, name, f.BigInt())
	}
	return n, nil
}

// extraMembers returns v's members other than known, or nil.
func extraMembers(v canon.Value, known ...string) []canon.Member {
	var out []canon.Member
outer:
	for _, m := range v.Members() {
		for _, k := range known {
			if m.Key == k {
				continue outer
			}
		}
		out = append(out, m)
	}
	return out
}
