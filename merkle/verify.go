package merkle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
)

// ProblemKind names one kind of finding in a Report. The values are
// stable: they appear in JSON output.
type ProblemKind string

// Findings that make a backpack fail verification (Report.Problems).
const (
	// A manifest entry's file is not on disk (or is not a regular file).
	MissingFile ProblemKind = "missing_file"
	// A file's size differs from its entry (Want: entry, Got: disk).
	SizeMismatch ProblemKind = "size_mismatch"
	// A file's SHA-256 differs from its entry (Want: entry, Got: disk).
	SHA256Mismatch ProblemKind = "sha256_mismatch"
	// A file on disk is not in the manifest and not excluded.
	PhantomFile ProblemKind = "phantom_file"
	// A manifest path is absolute, has "..", ".", or empty components, or
	// resolves outside the directory through a symlink (compliance
	// test_08). Its file is not read.
	UnsafePath ProblemKind = "unsafe_path"
	// A symlink on disk points outside the directory.
	EscapingSymlink ProblemKind = "escaping_symlink"
	// A manifest entry sorts before its predecessor.
	UnsortedEntry ProblemKind = "unsorted_entry"
	// A manifest path is listed more than once.
	DuplicateEntry ProblemKind = "duplicate_entry"
	// file_count differs from the number of entries (Want: entries, Got:
	// file_count).
	FileCountMismatch ProblemKind = "file_count_mismatch"
	// backpack_spec_version is not "1.0" (compliance test_12).
	BadSpecVersion ProblemKind = "spec_version"
	// merkle_root.txt is missing, empty or not 64 lowercase hex digits.
	BadRootFile ProblemKind = "bad_root_file"
	// The root recomputed from the manifest differs from merkle_root.txt
	// (compliance test_10; Want: recomputed, Got: stored).
	RootMismatch ProblemKind = "root_mismatch"
	// The root of a fresh walk of the disk differs from the root
	// recomputed from the manifest (Want: manifest, Got: disk).
	DiskRootMismatch ProblemKind = "disk_root_mismatch"
	// manifest.json is missing or cannot be parsed (VerifyDir).
	BadManifest ProblemKind = "bad_manifest"
	// Something could not be read; Detail has the error.
	Unreadable ProblemKind = "unreadable"
)

// Findings that do not fail verification (Report.Warnings).
const (
	// A member the format does not define: kept, part of the encoding
	// (and, inside an entry, of the Merkle leaf), but checked by nothing.
	UnknownField ProblemKind = "unknown_field"
	// manifest_version is not "manifest.v0" (the reference never checks).
	OddManifestVersion ProblemKind = "manifest_version"
	// manifest.json is not the canonical encoding of its content, e.g.
	// it ends with a newline (VerifyDir).
	NonCanonicalManifest ProblemKind = "manifest_not_canonical"
	// The walk skipped a dangling symlink, a symlinked directory or a
	// special file, as the reference does.
	SkippedPath ProblemKind = "skipped"
)

// Problem is one finding about one path (or about the whole manifest when
// Path is empty).
type Problem struct {
	Kind   ProblemKind `json:"kind"`
	Path   string      `json:"path,omitempty"`
	Want   string      `json:"want,omitempty"`
	Got    string      `json:"got,omitempty"`
	Detail string      `json:"detail,omitempty"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	if p.Path != "" {
		fmt.Fprintf(&b, " %s", strconv.Quote(p.Path))
	}
	switch {
	case p.Want != "" && p.Got != "":
		fmt.Fprintf(&b, ": want %s, got %s", p.Want, p.Got)
	case p.Want != "":
		fmt.Fprintf(&b, ": want %s", p.Want)
	case p.Got != "":
		fmt.Fprintf(&b, ": got %s", p.Got)
	}
	if p.Detail != "" {
		fmt.Fprintf(&b, " (%s)", p.Detail)
	}
	return b.String()
}

// Report is the outcome of verifying a backpack directory against its
// manifest and merkle_root.txt. It marshals to JSON; the root fields use
// the names of the reference's expected.json. Roots that could not be
// computed are empty.
type Report struct {
	Dir string `json:"dir"`
	// OK is true when Problems is empty.
	OK bool `json:"ok"`

	SpecVersion string `json:"backpack_spec_version"`
	FileCount   int64  `json:"file_count"` // as stored
	Entries     int    `json:"entries"`    // entries in files
	DiskFiles   int    `json:"disk_files"` // files found by the walk

	// StoredRoot is merkle_root.txt, whitespace stripped.
	StoredRoot string `json:"merkle_root_stored"`
	// ManifestRoot is recomputed from the manifest's entries as the
	// reference does (sorted by path, duplicates kept).
	ManifestRoot string `json:"merkle_root_from_stored_manifest"`
	// DiskRoot is the root of a fresh walk of the directory (as Build).
	DiskRoot string `json:"merkle_root_from_disk_walk"`
	// FilesMatchDisk: every entry is a safe path to a file of the listed
	// size and digest (compliance tests 08 and 09).
	FilesMatchDisk bool `json:"manifest_files_match_disk"`

	Problems []Problem `json:"problems"`
	Warnings []Problem `json:"warnings"`
}

func (r *Report) problem(p Problem) { r.Problems = append(r.Problems, p) }
func (r *Report) warning(p Problem) { r.Warnings = append(r.Warnings, p) }

// Has reports whether the report has a problem or warning of kind k for
// path (any path when path is "").
func (r *Report) Has(k ProblemKind, path string) bool {
	for _, list := range [][]Problem{r.Problems, r.Warnings} {
		for _, p := range list {
			if p.Kind == k && (path == "" || p.Path == path) {
				return true
			}
		}
	}
	return false
}

// String formats the report for people: a verdict line, the roots, then
// one line per problem and warning.
func (r *Report) String() string {
	var b strings.Builder
	verdict := "OK"
	if !r.OK {
		verdict = fmt.Sprintf("FAILED (%d problems)", len(r.Problems))
	}
	fmt.Fprintf(&b, "%s: %s\n", r.Dir, verdict)
	fmt.Fprintf(&b, "  entries %d (file_count %d), files on disk %d\n", r.Entries, r.FileCount, r.DiskFiles)
	fmt.Fprintf(&b, "  root stored    %s\n", orNone(r.StoredRoot))
	fmt.Fprintf(&b, "  root manifest  %s\n", orNone(r.ManifestRoot))
	fmt.Fprintf(&b, "  root disk      %s\n", orNone(r.DiskRoot))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	for _, p := range r.Warnings {
		fmt.Fprintf(&b, "  warning: %s\n", p)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Verify checks the backpack directory dir against its parsed manifest m
// and storedRoot, the content of merkle_root.txt ("" when it is missing).
// It reports, each precisely: the manifest's own faults (spec version,
// file_count, order, duplicates, unsafe paths, unknown members); per
// entry, a missing file, a size or digest mismatch; files on disk that the
// manifest lacks (phantoms) and symlinks leading outside dir; and the
// three roots: merkle_root.txt, the root recomputed from m as the
// reference does, and the root of a fresh walk, with mismatches between
// them. Every file is read and hashed; nothing is cached. Files are read
// through an os.Root on dir. Verify writes nothing.
func Verify(dir string, m Manifest, storedRoot string) *Report {
	r := &Report{
		Dir:         dir,
		SpecVersion: m.SpecVersion,
		FileCount:   m.FileCount,
		Entries:     len(m.Files),
		Problems:    []Problem{},
		Warnings:    []Problem{},
	}
	checkManifest(r, m)
	checkStoredRoot(r, StripSpace(storedRoot))

	t, err := openTree(dir)
	if err != nil {
		r.problem(Problem{Kind: Unreadable, Detail: err.Error()})
		r.OK = false
		return r
	}
	defer t.Close()
	ex := make(map[string]bool)
	for _, p := range DefaultExclude() {
		ex[p] = true
	}
	s := t.walk(ex, nil)
	r.DiskFiles = len(s.files)
	checkEntries(r, t, m, s)
	checkDisk(r, m, s)
	r.OK = len(r.Problems) == 0
	return r
}

// checkManifest reports faults of the manifest alone and computes
// ManifestRoot.
func checkManifest(r *Report, m Manifest) {
	if m.SpecVersion != SpecVersion {
		r.problem(Problem{Kind: BadSpecVersion, Want: strconv.Quote(SpecVersion), Got: strconv.Quote(m.SpecVersion)})
	}
	if m.ManifestVersion != ManifestVersion {
		r.warning(Problem{Kind: OddManifestVersion, Want: strconv.Quote(ManifestVersion), Got: strconv.Quote(m.ManifestVersion)})
	}
	if m.FileCount != int64(len(m.Files)) {
		r.problem(Problem{Kind: FileCountMismatch, Want: strconv.Itoa(len(m.Files)), Got: strconv.FormatInt(m.FileCount, 10)})
	}
	for _, x := range m.Extra {
		r.warning(Problem{Kind: UnknownField, Detail: "manifest member " + strconv.Quote(x.Key)})
	}
	for i, e := range m.Files {
		for _, x := range e.Extra {
			r.warning(Problem{Kind: UnknownField, Path: e.Path, Detail: "entry member " + strconv.Quote(x.Key) + " (part of the Merkle leaf)"})
		}
		if i == 0 {
			continue
		}
		switch prev := m.Files[i-1].Path; {
		case e.Path == prev:
			r.problem(Problem{Kind: DuplicateEntry, Path: e.Path, Detail: fmt.Sprintf("entries %d and %d", i-1, i)})
		case e.Path < prev:
			r.problem(Problem{Kind: UnsortedEntry, Path: e.Path, Detail: fmt.Sprintf("entry %d sorts before entry %d %q", i, i-1, prev)})
		}
	}
	root, err := ReferenceRoot(m.Files)
	if err != nil {
		r.problem(Problem{Kind: BadManifest, Detail: err.Error()})
		return
	}
	r.ManifestRoot = root.String()
}

// checkStoredRoot compares merkle_root.txt (stripped) with ManifestRoot.
func checkStoredRoot(r *Report, stored string) {
	r.StoredRoot = stored
	if stored == "" {
		r.problem(Problem{Kind: BadRootFile, Detail: "merkle_root.txt is missing or empty"})
		return
	}
	if _, err := ParseHash(stored); err != nil {
		r.problem(Problem{Kind: BadRootFile, Detail: err.Error()})
	}
	if r.ManifestRoot != "" && stored != r.ManifestRoot {
		r.problem(Problem{Kind: RootMismatch, Want: r.ManifestRoot, Got: stored, Detail: "merkle_root.txt does not match the manifest"})
	}
}

// checkEntries checks every manifest entry against the disk, in manifest
// order. Files the walk found are compared with its result; others (a
// path through a symlinked directory, an excluded name) are read directly.
func checkEntries(r *Report, t *tree, m Manifest, s *scan) {
	onDisk := make(map[string]Entry, len(s.files))
	for _, e := range s.files {
		onDisk[e.Path] = e
	}
	failed := s.failed()
	r.FilesMatchDisk = true
	for _, e := range m.Files {
		if !checkEntry(r, t, e, onDisk, failed) {
			r.FilesMatchDisk = false
		}
	}
}

// checkEntry reports what is wrong with one entry and whether it matched.
// Paths in failed could not be read by the walk, which reports them.
func checkEntry(r *Report, t *tree, e Entry, onDisk map[string]Entry, failed map[string]bool) bool {
	if err := CheckPath(e.Path); err != nil {
		var pe *PathError
		errors.As(err, &pe)
		r.problem(Problem{Kind: UnsafePath, Path: e.Path, Detail: pe.Reason})
		return false
	}
	if failed[e.Path] {
		return false
	}
	got, ok := onDisk[e.Path]
	if !ok {
		var err error
		got, err = readEntry(t, e.Path)
		switch {
		case errors.Is(err, errEscapes):
			r.problem(Problem{Kind: UnsafePath, Path: e.Path, Detail: "resolves outside the directory through a symlink"})
			return false
		case errors.Is(err, fs.ErrNotExist):
			r.problem(Problem{Kind: MissingFile, Path: e.Path})
			return false
		case errors.Is(err, errNotRegular):
			r.problem(Problem{Kind: MissingFile, Path: e.Path, Detail: "not a regular file"})
			return false
		case err != nil:
			r.problem(Problem{Kind: Unreadable, Path: e.Path, Detail: err.Error()})
			return false
		}
	}
	match := true
	if got.Size != e.Size {
		r.problem(Problem{Kind: SizeMismatch, Path: e.Path, Want: strconv.FormatInt(e.Size, 10), Got: strconv.FormatInt(got.Size, 10)})
		match = false
	}
	if got.SHA256 != e.SHA256 {
		p := Problem{Kind: SHA256Mismatch, Path: e.Path, Want: e.SHA256, Got: got.SHA256}
		if _, err := ParseHash(e.SHA256); err != nil {
			p.Detail = "the manifest's digest is malformed"
		}
		r.problem(p)
		match = false
	}
	return match
}

// readEntry hashes the file a manifest path names, following symlinks
// only within the directory.
func readEntry(t *tree, path string) (Entry, error) {
	target, err := t.resolve(path)
	if err != nil {
		return Entry{}, err
	}
	h, size, _, err := t.hashFile(target, nil)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Path: path, SHA256: h.String(), Size: size}, nil
}

// checkDisk reports what the walk found that the manifest lacks, and the
// disk root.
func checkDisk(r *Report, m Manifest, s *scan) {
	listed := make(map[string]bool, len(m.Files))
	for _, e := range m.Files {
		listed[e.Path] = true
	}
	for _, e := range s.files {
		if !listed[e.Path] {
			r.problem(Problem{Kind: PhantomFile, Path: e.Path, Got: e.SHA256, Detail: fmt.Sprintf("size %d", e.Size)})
		}
	}
	for _, p := range s.badNames {
		r.problem(Problem{Kind: PhantomFile, Path: p, Detail: "name is not valid UTF-8, so no manifest can list it"})
	}
	for _, sk := range s.skipped {
		if sk.Reason == SkipEscapingSymlink {
			r.problem(Problem{Kind: EscapingSymlink, Path: sk.Path, Detail: sk.Detail})
		} else {
			r.warning(Problem{Kind: SkippedPath, Path: sk.Path, Detail: string(sk.Reason) + " " + sk.Detail})
		}
	}
	for _, e := range s.errs {
		r.problem(Problem{Kind: Unreadable, Path: e.Path, Detail: e.Err.Error()})
	}
	if len(s.errs) > 0 || len(s.badNames) > 0 {
		return // the walk is incomplete: no disk root
	}
	root, err := RootOf(s.files)
	if err != nil {
		panic("bug: walk produced entries RootOf refuses: " + err.Error())
	}
	r.DiskRoot = root.String()
	if r.ManifestRoot != "" && r.DiskRoot != r.ManifestRoot {
		r.problem(Problem{Kind: DiskRootMismatch, Want: r.ManifestRoot, Got: r.DiskRoot, Detail: "the files on disk do not match the manifest"})
	}
}

// VerifyDir verifies the backpack directory dir with its own manifest.json
// and merkle_root.txt (read through an os.Root on dir, bounded by the
// default Limits). A missing or unparsable manifest is reported as
// BadManifest without checking files; a manifest.json that is not the
// canonical encoding of its content (a trailing newline, spacing, key
// order) is a warning, since the reference reads it as JSON.
func VerifyDir(dir string) *Report {
	fail := func(k ProblemKind, detail string) *Report {
		return &Report{Dir: dir, Problems: []Problem{{Kind: k, Path: "manifest.json", Detail: detail}}, Warnings: []Problem{}}
	}
	t, err := openTree(dir)
	if err != nil {
		r := fail(Unreadable, err.Error())
		r.Problems[0].Path = ""
		return r
	}
	data, err := readSmall(t, "manifest.json", DefaultMaxSize)
	if err != nil {
		t.Close()
		return fail(BadManifest, err.Error())
	}
	m, err := ParseManifest(data)
	if err != nil {
		t.Close()
		return fail(BadManifest, err.Error())
	}
	rootText, err := readSmall(t, "merkle_root.txt", maxRootFile)
	t.Close()
	r := Verify(dir, m, string(rootText))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.problem(Problem{Kind: Unreadable, Path: "merkle_root.txt", Detail: err.Error()})
		r.OK = false
	}
	if enc, err := m.Encode(); err == nil && !bytes.Equal(enc, data) {
		detail := "not canonical JSON"
		if bytes.Equal(append(enc, '\n'), data) {
			detail = "ends with a newline"
		}
		r.warning(Problem{Kind: NonCanonicalManifest, Path: "manifest.json", Detail: detail})
	}
	return r
}

// readSmall reads the file name in t, refusing more than limit bytes.
func readSmall(t *tree, name string, limit int) ([]byte, error) {
	f, err := t.root.OpenFile(name, openFlagsRead, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close() // read only
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", name, errNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", name, ErrTooLarge, limit)
	}
	return data, nil
}
