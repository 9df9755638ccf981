package cache

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

var k1 = Key{Upstream: "imaps://imap.example.net:993", User: "bob@example.com", Mailbox: "INBOX", UIDValidity: 1}

func TestListingsGetPutRemove(t *testing.T) {
	l, err := NewListings(10)
	if err != nil {
		t.Fatal(err)
	}
	e := &Entry{UIDNext: 2, NumMessages: 1, Messages: msgs(1)}
	if _, ok := l.Get(k1); ok {
		t.Fatal("hit on empty cache")
	}
	l.Put(k1, e)
	got, ok := l.Get(k1)
	if !ok || got.UIDNext != 2 {
		t.Fatalf("Get = %+v, %v", got, ok)
	}
	if !e.Listed.IsZero() {
		t.Error("Put stamped the caller's entry in place")
	}
	if got.Listed.IsZero() {
		t.Error("stored entry has no Listed time")
	}

	// The key isolates users, upstreams, mailboxes and UIDVALIDITYs.
	for _, other := range []Key{
		{k1.Upstream, "BOB@example.com", k1.Mailbox, 1},
		{k1.Upstream, "alice@example.com", k1.Mailbox, 1},
		{"imaps://other:993", k1.User, k1.Mailbox, 1},
		{k1.Upstream, k1.User, "Archive", 1},
		{k1.Upstream, k1.User, k1.Mailbox, 2},
	} {
		if _, ok := l.Get(other); ok {
			t.Errorf("%+v hit bob's entry", other)
		}
	}

	l.Remove(k1)
	if _, ok := l.Get(k1); ok || l.Len() != 0 {
		t.Error("entry survived Remove")
	}
	l.Put(k1, e)
	l.Put(k1, nil)
	if l.Len() != 0 {
		t.Error("Put(nil) did not remove")
	}

	hits, misses := l.Stats()
	if hits != 1 || misses != 7 {
		t.Errorf("Stats = %d hits, %d misses; want 1, 7", hits, misses)
	}
}

func TestListingsBound(t *testing.T) {
	l, err := NewListings(3)
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) Key { return Key{User: fmt.Sprint("u", i), UIDValidity: 1} }
	for i := range 3 {
		l.Put(key(i), &Entry{UIDNext: uint32(i + 1)})
	}
	l.Get(key(0)) // 0 is now the most recent; 1 the least
	l.Put(key(3), &Entry{})
	if l.Len() != 3 {
		t.Errorf("Len = %d, want 3", l.Len())
	}
	if _, ok := l.Get(key(1)); ok {
		t.Error("least recently used entry was not evicted")
	}
	for _, i := range []int{0, 2, 3} {
		if _, ok := l.Get(key(i)); !ok {
			t.Errorf("entry %d evicted", i)
		}
	}
	if _, err := NewListings(0); err == nil {
		t.Error("NewListings(0) succeeded")
	}
}

func TestListingsMaxAge(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l, _ := NewListings(10)
	l.MaxAge = time.Hour
	l.Now = func() time.Time { return now }

	l.Put(k1, mustEntry(t, msgs(1), 2, 1, 0))
	now = now.Add(59 * time.Minute)
	e, ok := l.Get(k1)
	if !ok {
		t.Fatal("entry expired early")
	}

	// An extension keeps the age of the full listing it came from.
	ext, ok := e.Extend(msgs(2), 3, 2, 0)
	if !ok {
		t.Fatal("Extend failed")
	}
	l.Put(k1, ext)
	now = now.Add(time.Minute)
	if _, ok := l.Get(k1); ok {
		t.Error("entry past MaxAge was served")
	}
	if l.Len() != 0 {
		t.Error("expired entry not removed")
	}
	if hits, misses := l.Stats(); hits != 1 || misses != 1 {
		t.Errorf("Stats = %d, %d; want 1, 1", hits, misses)
	}
}

func TestListingsNil(t *testing.T) {
	var l *Listings
	l.Put(k1, &Entry{})
	l.Remove(k1)
	if _, ok := l.Get(k1); ok || l.Len() != 0 {
		t.Error("nil Listings cached something")
	}
	if h, m := l.Stats(); h != 0 || m != 0 {
		t.Error("nil Listings has stats")
	}
}

func TestListingsConcurrent(t *testing.T) {
	l, _ := NewListings(8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := Key{User: fmt.Sprint(g), UIDValidity: uint32(i % 16)}
				l.Put(k, &Entry{UIDNext: uint32(i)})
				l.Get(k)
				if i%7 == 0 {
					l.Remove(k)
				}
			}
		})
	}
	wg.Wait()
	if h, m := l.Stats(); h+m != 8*500 {
		t.Errorf("Stats = %d + %d, want %d lookups", h, m, 8*500)
	}
}

func TestBodies(t *testing.T) {
	b, err := NewBodies(100, 40)
	if err != nil {
		t.Fatal(err)
	}
	bk := func(uid uint32) BodyKey { return BodyKey{Key: k1, UID: uid} }
	body := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }

	if b.Put(bk(1), body(41)) {
		t.Error("body over MaxBody accepted")
	}
	buf := body(40)
	if !b.Put(bk(1), buf) {
		t.Fatal("Put failed")
	}
	buf[0] = 'y' // the cache holds its own copy
	if got, ok := b.Get(bk(1)); !ok || got[0] != 'x' {
		t.Errorf("Get = %q, %v", got, ok)
	}
	b.Put(bk(2), body(40))
	b.Get(bk(1)) // 2 is now least recent
	if b.Bytes() != 80 || b.Len() != 2 {
		t.Fatalf("Bytes %d Len %d, want 80, 2", b.Bytes(), b.Len())
	}

	// 30 more bytes exceed 100: the least recent body goes, and only it.
	b.Put(bk(3), body(30))
	if _, ok := b.Get(bk(2)); ok {
		t.Error("LRU body not evicted by bytes")
	}
	if b.Bytes() != 70 || b.Len() != 2 {
		t.Errorf("after eviction: Bytes %d Len %d, want 70, 2", b.Bytes(), b.Len())
	}

	// Replacing a body accounts for the old size.
	b.Put(bk(3), body(10))
	if b.Bytes() != 50 {
		t.Errorf("after replace: Bytes %d, want 50", b.Bytes())
	}
	// A put that needs several evictions.
	b.Put(bk(4), body(40))
	b.Put(bk(5), body(40))
	if b.Bytes() > 100 {
		t.Errorf("Bytes %d over the bound", b.Bytes())
	}
	if _, ok := b.Get(bk(5)); !ok {
		t.Error("newest body evicted")
	}
	b.Remove(bk(5))
	if _, ok := b.Get(bk(5)); ok {
		t.Error("body survived Remove")
	}

	// Other users never see bob's body.
	if _, ok := b.Get(BodyKey{Key: Key{Upstream: k1.Upstream, User: "eve", Mailbox: "INBOX", UIDValidity: 1}, UID: 4}); ok {
		t.Error("body served across users")
	}
	hits, misses := b.Stats()
	if hits != 3 || misses != 3 {
		t.Errorf("Stats = %d, %d; want 3, 3", hits, misses)
	}
	if b.MaxBody() != 40 {
		t.Errorf("MaxBody = %d", b.MaxBody())
	}
}

func TestBodiesLimits(t *testing.T) {
	if _, err := NewBodies(0, 10); err == nil {
		t.Error("NewBodies(0, 10) succeeded")
	}
	if _, err := NewBodies(10, 0); err == nil {
		t.Error("NewBodies(10, 0) succeeded")
	}
	b, _ := NewBodies(10, DefaultMaxBody)
	if b.MaxBody() != 10 {
		t.Errorf("MaxBody not capped: %d", b.MaxBody())
	}
	var nilB *Bodies
	if nilB.Put(BodyKey{}, []byte("x")) || nilB.Len() != 0 || nilB.Bytes() != 0 || nilB.MaxBody() != 0 {
		t.Error("nil Bodies cached something")
	}
	nilB.Remove(BodyKey{})
	if _, ok := nilB.Get(BodyKey{}); ok {
		t.Error("nil Bodies hit")
	}
	if h, m := nilB.Stats(); h != 0 || m != 0 {
		t.Error("nil Bodies stats")
	}
}
