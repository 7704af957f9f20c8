//go:build race

// Package race reports whether the binary runs under the race detector.
// Allocation tests consult it: under -race, sync.Pool drops items at
// random, so pooled code allocates.
package race

// Enabled: built with -race.
const Enabled = true
