// Package reducer folds a Provara event log into belief state exactly as
// the reference's SovereignReducerV0 0.2.0 does (SPEC.md §6), with a
// byte-identical state_hash.
package reducer
