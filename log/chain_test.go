package log_test

import (
	"strings"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// chainLog builds events from a small notation, one per entry:
// "actor id prev [content]" with prev "-" for none. Content makes two
// entries with the same id differ.
func chainLog(t *testing.T, spec ...string) *bplog.ChainReport {
	t.Helper()
	c := bplog.NewChains()
	for i, s := range spec {
		f := strings.Fields(s)
		var b canon.ObjectBuilder
		b.Set("actor", canon.StringValue(f[0])).Set("event_id", canon.StringValue(f[1])).Set("type", canon.StringValue("X"))
		if f[2] == "-" {
			b.Set("prev_event_hash", canon.NullValue())
		} else {
			b.Set("prev_event_hash", canon.StringValue(f[2]))
		}
		if len(f) > 3 {
			b.Set("payload", canon.StringValue(f[3]))
		}
		v := b.Value()
		e, err := bplog.NewEvent(v)
		if err != nil {
			t.Fatal(err)
		}
		c.Add(e, i+1, bplog.ContentHash(canon.MustEncode(v)))
	}
	return c.Finish()
}

func TestChains(t *testing.T) {
	t.Run("linear chains of two actors", func(t *testing.T) {
		r := chainLog(t, "A a1 -", "B b1 -", "A a2 a1", "B b2 b1", "A a3 a2")
		if !r.OK() || len(r.Actors) != 2 || r.Actors[0].Head != "a3" || r.Actors[0].Events != 3 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("fork: A a1 -> a2 | -> a2x", func(t *testing.T) {
		r := chainLog(t, "A a1 -", "A a2 a1", "A a2x a1", "A a3 a2")
		if len(r.Forks) != 1 || r.Forks[0].Kind != bplog.ForkSamePrev || r.Forks[0].Prev != "a1" ||
			r.Forks[0].Events[0].Line != 2 || r.Forks[0].Events[1].Line != 3 || len(r.Breaks) != 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("two genesis events", func(t *testing.T) {
		r := chainLog(t, "A a1 -", "A a1x -")
		if len(r.Forks) != 1 || r.Forks[0].Prev != "" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("same event_id, different content", func(t *testing.T) {
		r := chainLog(t, "A a1 -", "A a2 a1 one", "A a2 a1 two")
		if len(r.Forks) != 1 || r.Forks[0].Kind != bplog.ForkSameID || r.Forks[0].Prev != "a2" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("identical duplicate is not a fork", func(t *testing.T) {
		r := chainLog(t, "A a1 -", "A a2 a1", "A a2 a1")
		if !r.OK() || len(r.Duplicates) != 1 || r.Duplicates[0].Lines[1] != 3 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("breaks", func(t *testing.T) {
		r := chainLog(t, "A a1 -", "A a3 a2", "A a2 a1", "B b1 -", "B b2 a1", "C c1 zz")
		kinds := map[int]string{}
		for _, b := range r.Breaks {
			kinds[b.Line] = b.Kind
		}
		if kinds[2] != bplog.BreakLaterPrev || kinds[5] != bplog.BreakOtherActor || kinds[6] != bplog.BreakMissingPrev || len(r.Breaks) != 3 {
			t.Fatalf("%+v", r.Breaks)
		}
	})
}
