package cache

import (
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
