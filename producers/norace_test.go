//go:build !race

package producers

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = false
