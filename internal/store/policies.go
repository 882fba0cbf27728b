package store

import "github.com/backpack-field/backpack/internal/canon"

// The policy files a new backpack gets, with the reference bootstrap's
// content and member order (SPEC.md §2.5), so that their bytes and hashes
// equal those of every reference-made backpack.

type kv = canon.Member

func obj(m ...kv) canon.Value    { return canon.OrderedObject(m...) }
func str(s string) canon.Value   { return canon.StringValue(s) }
func boolean(b bool) canon.Value { return canon.BoolValue(b) }
func num(i int64) canon.Value    { return canon.IntValue(i) }

func strs(ss ...string) canon.Value {
	vs := make([]canon.Value, len(ss))
	for i, s := range ss {
		vs[i] = str(s)
	}
	return canon.ArrayValue(vs...)
}

func safetyPolicy() canon.Value {
	return obj(
		kv{Key: "action_classes", Value: obj(
			kv{Key: "L0", Value: obj(
				kv{Key: "description", Value: str("data-only/reversible")},
				kv{Key: "offline_allowed", Value: boolean(true)},
				kv{Key: "approval", Value: str("local_reducer")},
			)},
			kv{Key: "L1", Value: obj(
				kv{Key: "description", Value: str("low-kinetic")},
				kv{Key: "offline_allowed", Value: boolean(true)},
				kv{Key: "approval", Value: str("local_reducer+policy")},
				kv{Key: "review_on_sync", Value: boolean(true)},
			)},
			kv{Key: "L2", Value: obj(
				kv{Key: "description", Value: str("high-kinetic")},
				kv{Key: "offline_allowed", Value: str("within_lease")},
				kv{Key: "approval", Value: str("multi_sensor+signed_policy")},
			)},
			kv{Key: "L3", Value: obj(
				kv{Key: "description", Value: str("irreversible/human-space")},
				kv{Key: "offline_allowed", Value: boolean(false)},
				kv{Key: "approval", Value: str("remote_signature_or_mfa")},
			)},
		)},
		kv{Key: "merge_ratchet", Value: str("most_restrictive_wins")},
		kv{Key: "loosen_requires", Value: str("signed_policy_update_by_top_authority")},
	)
}

func syncContract(rootKeyID string) canon.Value {
	return obj(
		kv{Key: "authorities", Value: canon.ArrayValue(obj(
			kv{Key: "role", Value: str("root")},
			kv{Key: "key_id", Value: str(rootKeyID)},
			kv{Key: "scope", Value: str("all")},
		))},
		kv{Key: "merge_policies", Value: obj(
			kv{Key: "events", Value: str("union_by_event_id")},
			kv{Key: "beliefs", Value: str("evidence_union_then_reduce")},
			kv{Key: "policies", Value: str("authority_signed_update")},
		)},
		kv{Key: "lease_model", Value: obj(
			kv{Key: "default_duration_seconds", Value: num(300)},
			kv{Key: "fencing", Value: boolean(true)},
		)},
		kv{Key: "replication_factor", Value: num(2)},
		kv{Key: "degradation_ladder", Value: strs("designated_human", "quorum_peers", "archive_peer", "local_emergency")},
	)
}

func retentionPolicy() canon.Value {
	return obj(
		kv{Key: "events", Value: str("permanent")},
		kv{Key: "checkpoints", Value: str("permanent")},
		kv{Key: "perception_t0_raw", Value: obj(
			kv{Key: "max_age_days", Value: num(30)},
			kv{Key: "eviction", Value: str("oldest_first")},
		)},
		kv{Key: "artifacts_cas", Value: obj(
			kv{Key: "referenced_by_event", Value: str("permanent")},
			kv{Key: "unreferenced", Value: obj(kv{Key: "max_age_days", Value: num(90)})},
		)},
		kv{Key: "state_caches", Value: str("regeneratable_on_eviction")},
	)
}

func ontology() canon.Value {
	return obj(
		kv{Key: "version", Value: str("v1")},
		kv{Key: "object_classes", Value: strs("door", "mug", "person", "container", "surface", "tool", "obstacle")},
	)
}

// indentFile renders v as the reference's bootstrap writes JSON files:
// json.dumps(indent=2, ensure_ascii=False) + "\n".
func indentFile(v canon.Value) []byte {
	b, err := canon.AppendIndent(nil, v)
	if err != nil {
		panic("bug: " + err.Error())
	}
	return append(b, '\n')
}
