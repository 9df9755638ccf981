//go:build race

package bridgetest

// RaceEnabled reports whether the test binary runs with the race
// detector, and so the bridge is built with it.
const RaceEnabled = true
