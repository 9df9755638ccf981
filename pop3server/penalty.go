package pop3server

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// penaltyWindow is how long a client address keeps its failed-login count
// after its last failure.
const penaltyWindow = 15 * time.Minute

// penaltyTableSize bounds the tracker's memory whatever the number of
// attacking addresses; the least recently failing ones are forgotten.
const penaltyTableSize = 65536

// penaltyTracker answers how long to delay a refused login from an address:
// base, 2×base, 4×base … up to max (2 → 4 → 8 → 15 s by default).
type penaltyTracker struct {
	base, max time.Duration
	now       func() time.Time

	mu    sync.Mutex
	table *lru.Cache[netip.Addr, penalty]
}

type penalty struct {
	failures int
	last     time.Time
}

func newPenaltyTracker(base, max time.Duration) *penaltyTracker {
	table, _ := lru.New[netip.Addr, penalty](penaltyTableSize)
	return &penaltyTracker{base: base, max: max, now: time.Now, table: table}
}

// fail records a refused login from addr and returns the delay to apply.
func (p *penaltyTracker) fail(addr netip.Addr) time.Duration {
	if p.base <= 0 {
		return 0
	}
	key := clientKey(addr)
	now := p.now()
	p.mu.Lock()
	pen, _ := p.table.Get(key)
	if now.Sub(pen.last) > penaltyWindow {
		pen.failures = 0
	}
	pen.failures++
	pen.last = now
	p.table.Add(key, pen)
	p.mu.Unlock()
	return p.delay(pen.failures)
}

// delay is base doubled per failure after the first, up to max.
func (p *penaltyTracker) delay(failures int) time.Duration {
	if p.base <= 0 {
		return 0
	}
	d := p.base
	for i := 1; i < failures && d < p.max; i++ {
		d *= 2
	}
	if p.max > 0 && d > p.max {
		d = p.max
	}
	return d
}

// current is the delay a new login attempt from addr waits before it is
// passed to the backend: the delay of its last failure while that is
// recent (penaltyWindow), else nothing.
func (p *penaltyTracker) current(addr netip.Addr) time.Duration {
	if n := p.failures(addr); n > 0 {
		return p.delay(n)
	}
	return 0
}

// failures is the current count for addr (for tests and logs).
func (p *penaltyTracker) failures(addr netip.Addr) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	pen, _ := p.table.Peek(clientKey(addr))
	if p.now().Sub(pen.last) > penaltyWindow {
		return 0
	}
	return pen.failures
}
