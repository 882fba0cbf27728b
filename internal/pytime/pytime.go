// Package pytime formats timestamps the way the Provara reference writes
// them: Python's datetime.now(timezone.utc).isoformat() (SPEC.md §3.3).
//
// The shape is YYYY-MM-DDTHH:MM:SS.ffffff+00:00: always UTC, always the
// offset "+00:00" (never "Z"), and microseconds with six digits. When the
// microsecond value is exactly zero, Python leaves the fraction out
// (YYYY-MM-DDTHH:MM:SS+00:00). Python's datetime only has microseconds, so
// finer digits are truncated, not rounded.
//
// The reference compares these strings as strings (merge order), so the
// shape is part of the format: "…:01+00:00" < "…:01.5+00:00" < "…:01Z".
package pytime

import "time"

const (
	layoutMicro  = "2006-01-02T15:04:05.000000-07:00"
	layoutSecond = "2006-01-02T15:04:05-07:00"
)

// FormatUTC returns t in UTC as Python's isoformat() prints an aware UTC
// datetime: microseconds (truncated) and "+00:00", the fraction omitted
// when the microseconds are zero. Years outside 0001..9999, which Python
// cannot represent, are printed as Go prints them.
func FormatUTC(t time.Time) string {
	t = t.UTC()
	// Truncate by nanosecond field rather than time.Truncate, which rounds
	// relative to the zero time and so depends on the date's sign.
	t = t.Add(-time.Duration(t.Nanosecond() % 1000))
	if t.Nanosecond() == 0 {
		return t.Format(layoutSecond)
	}
	return t.Format(layoutMicro)
}
