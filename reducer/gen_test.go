package reducer_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/backpack-field/backpack/internal/canon"
)

// realisticLog returns n parsed events shaped like a real backpack's: five
// actors with signed envelopes, observations and assertions on a few
// thousand keys whose values mostly agree but change now and then (so
// some keys are contested), some attestations, retractions, epochs and
// ignored types.
func realisticLog(tb testing.TB, n int, seed uint64) []canon.Value {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	actors := []string{"alice", "bob", "carol", "dave", "erin"}
	preds := []string{"state", "temperature", "battery", "location", "status"}
	states := []string{`"open"`, `"closed"`, `"unknown"`}
	const subjects = 700 // 700 subjects x 5 predicates = 3500 keys
	prev := map[string]string{}
	hex := func() string {
		const digits = "0123456789abcdef"
		b := make([]byte, 24)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	sig := func() string {
		const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		b := make([]byte, 88)
		for i := range 86 {
			b[i] = b64[rng.IntN(64)]
		}
		b[86], b[87] = '=', '='
		return string(b)
	}
	randomValue := func(pred string) string {
		switch pred {
		case "state", "status":
			return states[rng.IntN(len(states))]
		case "temperature":
			return fmt.Sprintf("%d.%d", 15+rng.IntN(3), rng.IntN(10))
		case "battery":
			return fmt.Sprint(rng.IntN(3) * 50)
		default:
			return fmt.Sprintf(`{"lat":%d.5,"lon":%d.25}`, rng.IntN(3), rng.IntN(3))
		}
	}
	// The world: each key has a current value that changes now and then;
	// most reports agree with it, some are wrong.
	world := map[string]string{}
	out := make([]canon.Value, 0, n)
	for i := range n {
		actor := actors[rng.IntN(len(actors))]
		id := "evt_" + hex()
		subj := fmt.Sprintf("device-%04d", rng.IntN(subjects))
		pred := preds[rng.IntN(len(preds))]
		key := subj + ":" + pred
		if _, ok := world[key]; !ok || rng.IntN(100) < 3 {
			world[key] = randomValue(pred)
		}
		value := world[key]
		if rng.IntN(100) < 8 {
			value = randomValue(pred)
		}
		conf := fmt.Sprintf("0.%d", 1+rng.IntN(9))
		ts := fmt.Sprintf("2026-01-%02dT%02d:%02d:%02d.%06d+00:00", 1+i/86400%28, i/3600%24, i/60%60, i%60, rng.IntN(1000000))
		var typ, payload, ns string
		switch r := rng.IntN(1000); {
		case r < 550:
			typ, ns = "OBSERVATION", "local"
			payload = fmt.Sprintf(`{"confidence":%s,"predicate":"%s","subject":"%s","timestamp":"%s","value":%s}`, conf, pred, subj, ts, value)
		case r < 800:
			typ, ns = "ASSERTION", "local"
			payload = fmt.Sprintf(`{"confidence":%s,"predicate":"%s","subject":"%s","value":%s}`, conf, pred, subj, value)
		case r < 880:
			typ, ns = "ATTESTATION", "canonical"
			payload = fmt.Sprintf(`{"actor_key_id":"bp1_%s","predicate":"%s","subject":"%s","target_event_id":"evt_%s","value":%s}`, hex()[:16], pred, subj, hex(), value)
		case r < 900:
			typ, ns = "RETRACTION", "canonical"
			payload = fmt.Sprintf(`{"predicate":"%s","subject":"%s"}`, pred, subj)
		case r < 901:
			typ, ns = "REDUCER_EPOCH", "canonical"
			payload = fmt.Sprintf(`{"epoch_id":"epoch-%d","ontology_versions":{"perception":"v%d"},"reducer_hash":"sha256:%s"}`, i, i%7, hex())
		default:
			typ, ns = []string{"GENESIS", "KEY_REVOCATION", "com.provara.redaction", "com.provara.timestamp_anchor"}[rng.IntN(4)], "canonical"
			payload = `{"note":"ignored by the reducer"}`
		}
		prevText := "null"
		if p, ok := prev[actor]; ok {
			prevText = `"` + p + `"`
		}
		prev[actor] = id
		line := fmt.Sprintf(`{"actor":"%s","actor_key_id":"bp1_%s","event_id":"%s","namespace":"%s","payload":%s,"prev_event_hash":%s,"sig":"%s","timestamp_utc":"%s","ts_logical":%d,"type":"%s"}`,
			actor, hex()[:16], id, ns, payload, prevText, sig(), ts, i+1, typ)
		v, err := canon.Parse([]byte(line))
		if err != nil {
			tb.Fatalf("generated line %q: %v", line, err)
		}
		out = append(out, v)
	}
	return out
}
