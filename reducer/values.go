package reducer

import (
	"iter"

	"github.com/backpack-field/backpack/internal/canon"
)

// This file turns the state's internal form into canon values, for readers
// and for persistence. Every method here only reads the State.

// Entry returns the entry of key in namespace ns as the reference holds it:
// an object for Canonical, Local and Contested, an array of archived
// canonical entries for Archived.
func (s *State) Entry(ns Namespace, key string) (canon.Value, bool) {
	if ns >= numNamespaces {
		return canon.Value{}, false
	}
	ks := s.keys[key]
	if ks == nil || !ks.slot[ns].live {
		return canon.Value{}, false
	}
	return ks.entryValue(ns), true
}

// Entries iterates over the entries of namespace ns in canonical key
// order, yielding each key and its entry as Entry returns it.
func (s *State) Entries(ns Namespace) iter.Seq2[string, canon.Value] {
	return func(yield func(string, canon.Value) bool) {
		if ns >= numNamespaces {
			return
		}
		for _, ks := range s.sortedKeys(ns) {
			if !yield(ks.key, ks.entryValue(ns)) {
				return
			}
		}
	}
}

// Keys returns the keys of namespace ns in canonical order.
func (s *State) Keys(ns Namespace) []string {
	if ns >= numNamespaces {
		return nil
	}
	ks := s.sortedKeys(ns)
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.key
	}
	return out
}

func (ks *keyState) entryValue(ns Namespace) canon.Value {
	switch ns {
	case Archived:
		elems := make([]canon.Value, len(ks.arch))
		for i := range ks.arch {
			elems[i] = ks.arch[i].toValue()
		}
		return canon.ArrayValue(elems...)
	case Canonical:
		return ks.canon.toValue()
	case Local:
		return ks.local.toValue()
	default:
		return ks.contestedValue()
	}
}

func (c *canonEntry) toValue() canon.Value {
	return canon.ObjectValue(c.members()...)
}

func (c *canonEntry) members() []canon.Member {
	return []canon.Member{
		{Key: "attestation_event_id", Value: c.attestationEventID},
		{Key: "attested_by", Value: c.attestedBy},
		{Key: "provenance", Value: c.provenance},
		{Key: "value", Value: c.value},
	}
}

func (a *archEntry) toValue() canon.Value {
	m := append(a.members(), canon.Member{Key: "superseded_by", Value: a.supersededBy})
	if a.retracted {
		m = append(m, canon.Member{Key: "retracted", Value: canon.BoolValue(true)})
	}
	return canon.ObjectValue(m...)
}

func (l *localEntry) toValue() canon.Value {
	return canon.ObjectValue(
		canon.Member{Key: "actor", Value: canon.StringValue(l.actor)},
		canon.Member{Key: "confidence", Value: canon.FloatValue(l.confidence)},
		canon.Member{Key: "evidence_count", Value: canon.IntValue(l.evidenceCount)},
		canon.Member{Key: "provenance", Value: l.provenance},
		canon.Member{Key: "timestamp", Value: l.ts.value()},
		canon.Member{Key: "value", Value: l.value},
	)
}

// contestedValue builds the contested entry from the groups, which cover
// at least the n records it shows (contest and loading group them).
func (ks *keyState) contestedValue() canon.Value {
	c := &ks.cont
	if c.literal != nil {
		return *c.literal
	}
	groups := ks.ev.sortedGroupsCopy()
	byValue := make([]canon.Member, 0, len(groups))
	for _, g := range groups {
		k := g.count(c.n)
		if k == 0 {
			continue
		}
		recs := make([]canon.Value, k)
		for i, idx := range g.idx[:k] {
			recs[i] = ks.ev.recordValue(int(idx))
		}
		byValue = append(byValue, canon.Member{Key: g.text, Value: canon.ArrayValue(recs...)})
	}
	return canon.ObjectValue(
		canon.Member{Key: "canonical_value", Value: c.canonicalValue},
		canon.Member{Key: "evidence_by_value", Value: canon.ObjectValue(byValue...)},
		canon.Member{Key: "reason", Value: canon.StringValue(reasonNames[c.reason])},
		canon.Member{Key: "status", Value: canon.StringValue("AWAITING_RESOLUTION")},
		canon.Member{Key: "total_evidence_count", Value: canon.IntValue(int64(c.n))},
	)
}

// PreimageValue returns the hash preimage (see HashPreimage) as a value,
// for embedding in a checkpoint. It fails where StateHash fails.
func (s *State) PreimageValue() (canon.Value, error) {
	if _, err := s.StateHash(); err != nil {
		return canon.Value{}, err
	}
	var b canon.ObjectBuilder
	for ns := range numNamespaces {
		var m []canon.Member
		for _, ks := range s.sec[ns].order { // merged by StateHash
			if ks.slot[ns].live {
				m = append(m, canon.Member{Key: ks.key, Value: ks.entryValue(ns)})
			}
		}
		b.Set(namespaceNames[ns], canon.ObjectValue(m...))
	}
	b.Set("metadata_partial", s.metadataValue())
	return b.Value(), nil
}

func (s *State) metadataValue() canon.Value {
	return canon.ObjectValue(
		canon.Member{Key: "current_epoch", Value: s.currentEpoch},
		canon.Member{Key: "event_count", Value: canon.IntValue(s.eventCount)},
		canon.Member{Key: "last_event_id", Value: s.lastEventID},
		canon.Member{Key: "reducer", Value: s.reducerMeta},
	)
}

// Evidence returns the private evidence index, as the reference's
// export_evidence() does: an object from key to the list of evidence
// records {event_id, actor, namespace, timestamp_utc, value, confidence}
// in application order. Together with the hash preimage it is everything
// Restore needs.
func (s *State) Evidence() canon.Value {
	m := make([]canon.Member, 0, len(s.keys))
	for key, ks := range s.keys {
		if ks.ev.len() == 0 {
			continue
		}
		recs := make([]canon.Value, ks.ev.len())
		for i := range recs {
			recs[i] = ks.ev.recordValue(i)
		}
		m = append(m, canon.Member{Key: key, Value: canon.ArrayValue(recs...)})
	}
	return canon.ObjectValue(m...)
}
