package radiosync

import "testing"

// TestTimestampLayouts: the timestamps a record carries in binary come
// back byte for byte; others stay in the residual.
func TestTimestampLayouts(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"2026-01-01T06:43:52.079000+00:00", true},
		{"2026-01-01T06:43:52.079123+00:00", true},
		{"2026-01-01T06:43:52+00:00", true},
		{"2026-01-01T06:43:52.079+00:00", true},
		{"2026-03-01T06:00:00.000001Z", true},
		{"2026-03-01T06:00:00Z", true},
		{"2026-03-01T06:00:00.500Z", true},
		{"1969-12-31T23:59:59.999999Z", true},
		{"2026-01-01T06:43:52.07+00:00", false},     // two digits
		{"2026-01-01T06:43:52.079000+01:00", false}, // another zone
		{"2026-01-01T06:43:52.079000", false},
		{"2026-01-01 06:43:52Z", false},
		{"2026-13-01T06:43:52Z", false},
		{"2026-01-01T06:43:52.079000+00:00 ", false},
		{"", false},
	} {
		us, kind, ok := parseTS(tc.s)
		if ok != tc.ok {
			t.Errorf("%q: ok %v, want %v", tc.s, ok, tc.ok)
			continue
		}
		if ok {
			if got := formatTS(us, kind); got != tc.s {
				t.Errorf("%q: back as %q", tc.s, got)
			}
		}
	}
}
