package cache

import (
	"sync/atomic"
)

// Budget bounds the octets of prefetched bodies that all sessions hold
// together (--prefetch-bytes). Sessions reserve octets before they ask the
// upstream for a body, so the bound holds for bodies on their way too, and
// a session that cannot reserve simply does not prefetch. Safe for
// concurrent use; a nil *Budget has no room.
type Budget struct {
	limit  int64
	used   atomic.Int64
	peak   atomic.Int64
	served atomic.Uint64
}

// NewBudget returns a budget of limit octets; nil (prefetch off) when
// limit is not positive.
func NewBudget(limit int64) *Budget {
	if limit <= 0 {
		return nil
	}
	return &Budget{limit: limit}
}

// Limit is the budget's size.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Used is the octets reserved now, by all sessions.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Peak is the most octets ever reserved at once; never above Limit.
func (b *Budget) Peak() int64 {
	if b == nil {
		return 0
	}
	return b.peak.Load()
}

// Served counts the bodies sessions have served from read-ahead.
func (b *Budget) Served() uint64 {
	if b == nil {
		return 0
	}
	return b.served.Load()
}

func (b *Budget) reserve(n int64) bool {
	if b == nil {
		return false
	}
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			for p := b.peak.Load(); used+n > p && !b.peak.CompareAndSwap(p, used+n); p = b.peak.Load() {
			}
			return true
		}
	}
}

func (b *Budget) release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// BodyKey names one prefetched section of the session's message UID: the
// whole message, or its header (for TOP n 0).
type BodyKey struct {
	UID    uint32
	Header bool
}

// Bodies holds one session's prefetched bodies, bounded by a per-session
// limit and by the shared Budget. Octets are reserved (Reserve) when the
// UID FETCH is sent, filled when its answer is read (Fill), lent out when
// the session serves the body (Take) and returned when it is done (Free).
//
// A body here belongs to the session's snapshot: the session fetched it,
// so it may serve it even after another client expunged the message (as
// under RFC 1939's exclusive maildrop lock). Nothing is shared between
// sessions, so one user's mail is never served to another, and entries are
// immutable once filled.
//
// Used by one session's goroutine only. A nil *Bodies holds nothing and
// refuses every reservation.
type Bodies struct {
	budget *Budget
	limit  int64
	held   int64 // reserved, filled and lent octets
	peak   int64
	slots  map[BodyKey]slot
	closed bool
}

type slot struct {
	reserved int64
	data     []byte // nil until filled
}

// NewBodies returns a session's body store of at most limit octets drawn
// from budget; nil (prefetch off) when budget is nil or limit not positive.
func NewBodies(budget *Budget, limit int64) *Bodies {
	if budget == nil || limit <= 0 {
		return nil
	}
	return &Bodies{budget: budget, limit: min(limit, budget.limit)}
}

// Limit is the session's limit; 0 for a nil store.
func (s *Bodies) Limit() int64 {
	if s == nil {
		return 0
	}
	return s.limit
}

// Room is how many more octets the session may reserve (the global budget
// may still refuse them).
func (s *Bodies) Room() int64 {
	if s == nil || s.closed {
		return 0
	}
	return s.limit - s.held
}

// Held is the octets the session holds now: reserved, filled and lent.
func (s *Bodies) Held() int64 {
	if s == nil {
		return 0
	}
	return s.held
}

// Peak is the most octets the session ever held at once; never above its
// limit.
func (s *Bodies) Peak() int64 {
	if s == nil {
		return 0
	}
	return s.peak
}

// Reserve sets n octets aside for the body k about to be fetched. It
// reports false, reserving nothing, when k is already known, or either
// the session's limit or the global budget has no room for n.
func (s *Bodies) Reserve(k BodyKey, n int64) bool {
	if s == nil || s.closed || n <= 0 || s.held+n > s.limit {
		return false
	}
	if _, ok := s.slots[k]; ok {
		return false
	}
	if !s.budget.reserve(n) {
		return false
	}
	if s.slots == nil {
		s.slots = make(map[BodyKey]slot)
	}
	s.slots[k] = slot{reserved: n}
	s.held += n
	s.peak = max(s.peak, s.held)
	return true
}

// Fill stores data, which the store now owns, as the body k and gives back
// what was reserved beyond its length. It reports false, storing nothing,
// when k was not reserved, is already filled, or data is larger than the
// reservation.
func (s *Bodies) Fill(k BodyKey, data []byte) bool {
	if s == nil {
		return false
	}
	sl, ok := s.slots[k]
	if !ok || sl.data != nil || int64(len(data)) > sl.reserved {
		return false
	}
	n := int64(len(data))
	s.free(sl.reserved - n)
	if data == nil {
		data = []byte{}
	}
	s.slots[k] = slot{reserved: n, data: data}
	return true
}

// Reserved is the octets set aside for k, reserved or filled; 0 when k is
// not in the store.
func (s *Bodies) Reserved(k BodyKey) int64 {
	if s == nil {
		return 0
	}
	return s.slots[k].reserved
}

// Filled reports whether the body k is in the store, ready to Take.
func (s *Bodies) Filled(k BodyKey) bool {
	if s == nil {
		return false
	}
	return s.slots[k].data != nil
}

// Take removes the filled body k and lends it to the caller, who must
// not modify it and must call Free(len(data)) once done with it.
func (s *Bodies) Take(k BodyKey) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	sl, ok := s.slots[k]
	if !ok || sl.data == nil {
		return nil, false
	}
	delete(s.slots, k)
	s.budget.served.Add(1)
	return sl.data, true
}

// Drop forgets k, filled or only reserved, and gives its octets back.
func (s *Bodies) Drop(k BodyKey) {
	if s == nil {
		return
	}
	if sl, ok := s.slots[k]; ok {
		delete(s.slots, k)
		s.free(sl.reserved)
	}
}

// Free gives back n octets of a body lent by Take. After Close it does
// nothing: Close gave everything back.
func (s *Bodies) Free(n int64) {
	if s == nil || s.closed {
		return
	}
	s.free(n)
}

func (s *Bodies) free(n int64) {
	s.held -= n
	s.budget.release(n)
}

// Close gives every octet back to the budget, lent ones included, and
// refuses further reservations.
func (s *Bodies) Close() {
	if s == nil || s.closed {
		return
	}
	s.budget.release(s.held)
	s.held = 0
	s.slots = nil
	s.closed = true
}
