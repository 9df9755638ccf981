package cache

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultMaxBody is a sensible per-body limit: large enough for the
// notifications and scans that TOP-then-RETR clients poll for, small
// enough that a busy server holds many.
const DefaultMaxBody = 64 << 10

// BodyKey names one message body. A UID's content never changes within a
// UIDVALIDITY, so a cached body is never stale, only possibly expunged.
type BodyKey struct {
	Key
	UID uint32
}

// Bodies is a byte-bounded LRU of whole message bodies (BODY[]), so a
// client that sends TOP and then RETR for the same small message costs one
// upstream fetch. Safe for concurrent use; a nil *Bodies caches nothing.
//
// A body served from here may belong to a message another client expunged
// since the session's login; the caller decides whether that matters (the
// message still existed when the session's snapshot was taken).
type Bodies struct {
	maxBytes, maxBody int64

	mu    sync.Mutex
	lru   *simplelru.LRU[BodyKey, []byte]
	bytes int64 // sum of len over cached bodies; guarded by mu

	hits, misses atomic.Uint64
}

// NewBodies returns a cache holding at most maxBytes of bodies, none
// larger than maxBody bytes. maxBytes must be positive; maxBody is capped
// at maxBytes.
func NewBodies(maxBytes, maxBody int64) (*Bodies, error) {
	if maxBytes <= 0 || maxBody <= 0 {
		return nil, fmt.Errorf("cache: bodies of %d bytes, %d per body: both must be positive", maxBytes, maxBody)
	}
	b := &Bodies{maxBytes: maxBytes, maxBody: min(maxBody, maxBytes)}
	// Bytes are the bound; the count limit only has to be out of the way.
	l, err := simplelru.NewLRU[BodyKey, []byte](math.MaxInt, func(_ BodyKey, v []byte) {
		b.bytes -= int64(len(v)) // runs under b.mu: only our calls evict
	})
	if err != nil {
		return nil, fmt.Errorf("cache: bodies: %w", err)
	}
	b.lru = l
	return b, nil
}

// MaxBody is the largest body Put accepts; callers need not fetch a
// larger message whole just to offer it.
func (b *Bodies) MaxBody() int64 {
	if b == nil {
		return 0
	}
	return b.maxBody
}

// Get returns the cached body for k. The caller must not modify it.
func (b *Bodies) Get(k BodyKey) ([]byte, bool) {
	if b == nil {
		return nil, false
	}
	b.mu.Lock()
	v, ok := b.lru.Get(k)
	b.mu.Unlock()
	if !ok {
		b.misses.Add(1)
		return nil, false
	}
	b.hits.Add(1)
	return v, true
}

// Put stores a copy of body under k, evicting least recently used bodies
// until the total fits. It reports false, storing nothing, for a body
// larger than MaxBody.
func (b *Bodies) Put(k BodyKey, body []byte) bool {
	if b == nil || int64(len(body)) > b.maxBody {
		return false
	}
	v := append([]byte(nil), body...) // the caller may reuse its buffer
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lru.Remove(k) // so the evict callback accounts for a replaced body
	b.lru.Add(k, v)
	b.bytes += int64(len(v))
	for b.bytes > b.maxBytes {
		b.lru.RemoveOldest()
	}
	return true
}

// Remove drops the body for k.
func (b *Bodies) Remove(k BodyKey) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.lru.Remove(k)
	b.mu.Unlock()
}

// Len is the number of cached bodies.
func (b *Bodies) Len() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lru.Len()
}

// Bytes is the total size of the cached bodies.
func (b *Bodies) Bytes() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bytes
}

// Stats returns the Get hits and misses so far.
func (b *Bodies) Stats() (hits, misses uint64) {
	if b == nil {
		return 0, 0
	}
	return b.hits.Load(), b.misses.Load()
}
