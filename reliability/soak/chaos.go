package soak

import (
	"context"
	"time"

	"github.com/popbridge/popbridge/internal/testing/faultnet"
)

// Chaos hurts the connections through r every interval until ctx ends,
// cycling through cuts, resets, short stalls (shorter than any deadline),
// a moment of reset connections, cuts a few KiB into new connections, and
// a restart: every connection reset and none accepted for a second (both
// of those open popbridge's circuit breaker). It clears r and returns how
// many faults it injected.
func Chaos(ctx context.Context, r *faultnet.Relay, interval time.Duration) int {
	n := 0
	tick := time.NewTicker(interval)
	defer tick.Stop()
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		select {
		case <-ctx.Done():
			r.Clear()
			r.Up()
			return n
		case <-tick.C:
		}
		n++
		switch n % 10 {
		case 0, 5:
			r.CutAll()
		case 8: // the upstream restarts
			r.Down()
			r.ResetAll()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			r.Up()
		case 1, 6, 9:
			r.ResetAll()
		case 2, 7:
			r.Set(faultnet.ToClient, faultnet.Faults{Stall: true})
			pause()
			r.Clear()
		case 3:
			r.SetAccept(faultnet.AcceptReset)
			pause()
			r.SetAccept(faultnet.AcceptForward)
		case 4:
			r.Set(faultnet.ToClient, faultnet.Faults{CutAfter: 6 << 10})
			pause()
			r.Clear()
		}
	}
}
