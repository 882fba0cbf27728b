package pytime_test

import (
	"testing"
	"time"

	"github.com/backpack-field/backpack/internal/pytime"
)

func TestFormatUTC(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"micro", time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC), "2026-01-02T03:04:05.123456+00:00"},
		{"zero micro omits fraction", time.Date(2026, 2, 13, 12, 0, 0, 0, time.UTC), "2026-02-13T12:00:00+00:00"},
		{"sub-micro only omits fraction", time.Date(2026, 2, 13, 12, 0, 0, 999, time.UTC), "2026-02-13T12:00:00+00:00"},
		{"truncates, not rounds", time.Date(2026, 1, 2, 3, 4, 5, 123456999, time.UTC), "2026-01-02T03:04:05.123456+00:00"},
		{"truncates at second boundary", time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), "2026-12-31T23:59:59.999999+00:00"},
		{"trailing zeros kept", time.Date(2026, 1, 2, 3, 4, 5, 500000000, time.UTC), "2026-01-02T03:04:05.500000+00:00"},
		{"one micro", time.Date(2026, 1, 2, 3, 4, 5, 1000, time.UTC), "2026-01-02T03:04:05.000001+00:00"},
		{"converted to UTC", time.Date(2026, 2, 17, 23, 21, 30, 535265000, est), "2026-02-18T04:21:30.535265+00:00"},
		{"before 1970 truncates toward earlier", time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), "1969-12-31T23:59:59.999999+00:00"},
		{"small year padded", time.Date(7, 3, 4, 5, 6, 7, 0, time.UTC), "0007-03-04T05:06:07+00:00"},
		{"monotonic reading ignored", time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC).Round(0), "2026-01-02T03:04:05.000006+00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pytime.FormatUTC(tt.in); got != tt.want {
				t.Errorf("FormatUTC(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestFormatUTCReferenceSamples formats the times of timestamps found in
// the reference data and expects the reference's text back.
func TestFormatUTCReferenceSamples(t *testing.T) {
	for _, want := range []string{
		"2026-02-18T21:22:45.230139+00:00",
		"2026-02-17T04:21:30.535265+00:00",
		"2026-02-13T01:23:41.871937+00:00",
	} {
		tm, err := time.Parse(time.RFC3339Nano, want)
		if err != nil {
			t.Fatal(err)
		}
		if got := pytime.FormatUTC(tm); got != want {
			t.Errorf("FormatUTC(Parse(%q)) = %q", want, got)
		}
	}
}
