//go:build !race

package bridgeproc

// RaceEnabled reports whether the test binary runs with the race
// detector, and so the bridge is built with it.
const RaceEnabled = false
