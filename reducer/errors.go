package reducer

import (
	"fmt"

	"github.com/backpack-field/backpack/internal/canon"
)

// ApplyError reports an event on which the reference reducer raises an
// exception, so that the log has no reference state. The State that
// returned it is stopped (see State.Apply).
type ApplyError struct {
	Count   int64       // events counted before this one
	EventID canon.Value // the event's event_id or id or "unknown_event"
	Reason  string      // what the reference trips over
}

func (e *ApplyError) Error() string {
	id, err := canon.Text(e.EventID)
	if err != nil {
		id = "(unencodable id)"
	}
	return fmt.Sprintf("reducer: event %d (%s): the reference raises: %s", e.Count+1, id, e.Reason)
}
