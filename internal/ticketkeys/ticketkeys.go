// Package ticketkeys rotates the keys a TLS server encrypts its session
// tickets with.
//
// A session ticket lets a client resume a TLS session without a full
// handshake; whoever holds the ticket key can decrypt every session
// resumed with tickets it sealed, so a key that lives long weakens forward
// secrecy. crypto/tls's own rotation keeps each key for 7 days; security
// scanners flag that. A Rotator makes a new key every Period (default a
// day) and keeps accepting the previous one, so a ticket stays usable for
// one to two periods and no key outlives two.
package ticketkeys

import (
	"crypto/rand"
	"crypto/tls"
	"sync"
	"time"
)

// DefaultPeriod is how long a key is the current one.
const DefaultPeriod = 24 * time.Hour

// Rotator holds the current and previous ticket keys.
type Rotator struct {
	period time.Duration
	now    func() time.Time

	mu       sync.Mutex
	cur      [32]byte
	prev     *[32]byte
	curSince time.Time
	applied  time.Time // curSince when last set on a tls.Config
}

// New returns a Rotator making a new key every period (DefaultPeriod when
// 0); now is its clock (nil: time.Now).
func New(period time.Duration, now func() time.Time) *Rotator {
	if period <= 0 {
		period = DefaultPeriod
	}
	if now == nil {
		now = time.Now
	}
	r := &Rotator{period: period, now: now}
	r.cur = r.newKey()
	r.curSince = now()
	return r
}

func (r *Rotator) newKey() [32]byte {
	var k [32]byte
	rand.Read(k[:]) // never returns an error since Go 1.24
	return k
}

// Keys returns the keys to use now, the current one first (tickets are
// sealed with it) and the previous one after it while it is less than two
// periods old. It rotates when the current key is a period old.
func (r *Rotator) Keys() [][32]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotateLocked()
	return r.keysLocked()
}

func (r *Rotator) rotateLocked() {
	now := r.now()
	age := now.Sub(r.curSince)
	if age < r.period {
		return
	}
	if age < 2*r.period {
		// The usual case: the current key becomes the previous one.
		prev := r.cur
		r.prev = &prev
	} else {
		// Idle for more than a period: the old key is too old to keep.
		r.prev = nil
	}
	r.cur = r.newKey()
	r.curSince = now
}

func (r *Rotator) keysLocked() [][32]byte {
	keys := [][32]byte{r.cur}
	if r.prev != nil {
		keys = append(keys, *r.prev)
	}
	return keys
}

// Install makes cfg use the rotating keys: they are set now, and checked
// at each handshake (through GetConfigForClient, which must be unset), so
// no goroutine or timer is needed.
func (r *Rotator) Install(cfg *tls.Config) {
	r.apply(cfg)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		r.apply(cfg)
		return nil, nil // go on with cfg itself
	}
}

// apply sets cfg's keys when they changed since the last call.
func (r *Rotator) apply(cfg *tls.Config) {
	r.mu.Lock()
	r.rotateLocked()
	if r.applied.Equal(r.curSince) {
		r.mu.Unlock()
		return
	}
	keys := r.keysLocked()
	r.applied = r.curSince
	r.mu.Unlock()
	cfg.SetSessionTicketKeys(keys)
}
