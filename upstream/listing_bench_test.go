package upstream

import (
	"context"
	"fmt"
	"testing"

	"github.com/popbridge/popbridge/cache"
)

// BenchmarkSetMessages is the per-login work of a cache hit on a
// 50,000-message mailbox: numbering the messages and formatting UIDLs.
func BenchmarkSetMessages(b *testing.B) {
	msgs := make([]cache.Message, 50_000)
	for i := range msgs {
		msgs[i] = cache.Message{UID: uint32(i + 1), Size: 2048}
	}
	e, err := cache.NewEntry(msgs, 50_001, 50_000, 0)
	if err != nil {
		b.Fatal(err)
	}
	be, err := New(Options{URL: &URL{Scheme: SchemeInsecure, Host: "127.0.0.1:1"}})
	if err != nil {
		b.Fatal(err)
	}
	m := &maildrop{b: be, uidValidity: 0x5f3e1a2b}
	b.ReportAllocs()
	for b.Loop() {
		m.setMessages(e)
	}
}

// BenchmarkSetMessagesRemembered is BenchmarkSetMessages after a
// UIDVALIDITY change with a state store: every message shows a remembered
// UIDL (docs/migration.md), and the steady-state poll also checks that
// nothing needs the store.
func BenchmarkSetMessagesRemembered(b *testing.B) {
	msgs := make([]cache.Message, 50_000)
	for i := range msgs {
		msgs[i] = cache.Message{UID: uint32(i + 1), Size: 2048, UIDL: fmt.Sprintf("%08x%08x", i+7, 0x5f000000)}
	}
	e, err := cache.NewEntry(msgs, 50_001, 50_000, 0)
	if err != nil {
		b.Fatal(err)
	}
	e.Assigned = e.UIDNext
	be, err := New(Options{URL: &URL{Scheme: SchemeInsecure, Host: "127.0.0.1:1"}, UIDLs: &memUIDLs{fail: true}})
	if err != nil {
		b.Fatal(err)
	}
	m := &maildrop{b: be, uidValidity: 0x5f3e1a2b}
	b.ReportAllocs()
	for b.Loop() {
		if got, err := m.remember(context.Background(), e); err != nil || got != e {
			b.Fatalf("a settled entry needed the store: %v", err)
		}
		m.setMessages(e)
	}
}
