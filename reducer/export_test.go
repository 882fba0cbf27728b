package reducer

// RecordBytes returns the stored canonical encodings of every evidence
// record, for tests and benchmarks.
func (s *State) RecordBytes() [][]byte {
	var out [][]byte
	for _, ks := range s.keys {
		for i := range ks.ev.len() {
			out = append(out, ks.ev.recordBytes(i))
		}
	}
	return out
}

// SetMarkEvery changes the spacing of hash marks until the returned
// function restores it.
func SetMarkEvery(n int) (restore func()) {
	old := markEvery
	markEvery = n
	return func() { markEvery = old }
}

// Marks returns the number of resumable hash marks.
func (s *State) Marks() int { return len(s.hc.marks) }

// Python helpers, for tests.
var (
	ParsePyFloat = parsePyFloat
	Pystr        = pystr
	SafeFloat    = safeFloat
	PyEqual      = pyEqual
	Truthy       = truthy
)
