package cache

import (
	"fmt"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Listings is the LRU of maildrop listings, safe for concurrent use. A nil
// *Listings caches nothing (every Get misses), which is how a disabled
// cache looks to callers.
type Listings struct {
	// MaxAge, when positive, makes Get miss for an entry whose full
	// listing (Entry.Listed) is at least that old, so that flag changes
	// invisible without CONDSTORE are picked up eventually. Set it
	// before first use.
	MaxAge time.Duration
	// Now is the clock for Listed and MaxAge; nil means time.Now. Set it
	// before first use.
	Now func() time.Time

	lru          *lru.Cache[Key, *Entry]
	hits, misses atomic.Uint64
}

// NewListings returns a cache of at most maxEntries mailboxes, evicting
// the least recently used. maxEntries must be positive.
func NewListings(maxEntries int) (*Listings, error) {
	c, err := lru.New[Key, *Entry](maxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: listings of %d entries: %w", maxEntries, err)
	}
	return &Listings{lru: c}, nil
}

func (l *Listings) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Get returns the entry for k and counts a hit, or counts a miss. An entry
// past MaxAge is removed and counts as a miss. The entry must not be
// modified.
func (l *Listings) Get(k Key) (*Entry, bool) {
	if l == nil {
		return nil, false
	}
	e, ok := l.lru.Get(k)
	if ok && l.MaxAge > 0 && l.now().Sub(e.Listed) >= l.MaxAge {
		l.lru.Remove(k)
		ok = false
	}
	if !ok {
		l.misses.Add(1)
		return nil, false
	}
	l.hits.Add(1)
	return e, true
}

// Put stores e under k, replacing any entry there, and returns the entry
// stored. e must not be modified afterwards. When e.Listed is zero the
// stored entry is a copy stamped with the current time (e itself is left
// alone); callers that derive entries from e later should derive them from
// the returned one, so they keep its age. A nil e removes k.
func (l *Listings) Put(k Key, e *Entry) *Entry {
	if l == nil || e == nil {
		if l != nil {
			l.lru.Remove(k)
		}
		return e
	}
	if e.Listed.IsZero() {
		stamped := *e // Messages is shared, which is fine: it is immutable.
		stamped.Listed = l.now()
		e = &stamped
	}
	l.lru.Add(k, e)
	return e
}

// Remove drops the entry for k. The upstream layer calls it after its own
// QUIT update changed the mailbox (expunge, flag or move), unless it
// replaces the entry with one it knows to be exact.
func (l *Listings) Remove(k Key) {
	if l != nil {
		l.lru.Remove(k)
	}
}

// Len is the number of cached entries.
func (l *Listings) Len() int {
	if l == nil {
		return 0
	}
	return l.lru.Len()
}

// Stats returns how many Gets found a usable entry and how many did not.
// A hit still needs Decide: it says the listing was known, not that it
// was fresh.
func (l *Listings) Stats() (hits, misses uint64) {
	if l == nil {
		return 0, 0
	}
	return l.hits.Load(), l.misses.Load()
}
