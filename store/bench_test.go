package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/store"
)

// benchStores runs fn against a SQLite file and, where PostgreSQL is
// installed, a private PostgreSQL cluster.
func benchStores(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := store.Open(b.Context(), "sqlite:bench.db", b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		pg := testenv.StartPostgres(b)
		s, err := store.Open(b.Context(), pg.NewDatabase(b), "")
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
}

// BenchmarkAppendJournal: one QUIT's journal write (one entry) and its
// outcome, the two writes a deleting session adds.
func BenchmarkAppendJournal(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		for i := 0; b.Loop(); i++ {
			ids, err := s.AppendJournal(b.Context(), []store.JournalEntry{{Time: time.Now(), User: "alice", UID: uint32(i)}})
			if err == nil {
				err = s.SetJournalOutcome(b.Context(), ids, "applied")
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPutUIDLs1000: remembering a 1,000-message mailbox at once (the
// first listing with a store, or a rematch).
func BenchmarkPutUIDLs1000(b *testing.B) {
	recs := make([]store.UIDLRecord, 1000)
	for i := range recs {
		recs[i] = store.UIDLRecord{UIDValidity: 1, UID: uint32(i + 1), UIDL: fmt.Sprintf("%08X00000001", i+1),
			Size: 4096, MessageID: fmt.Sprintf("<%d@example.com>", i), Date: "Mon, 7 Dec 2026 00:00:00 +0000", HeaderHash: fmt.Sprintf("%064x", i)}
	}
	benchStores(b, func(b *testing.B, s store.Store) {
		for i := 0; b.Loop(); i++ {
			if err := s.PutUIDLs(b.Context(), fmt.Sprint("user", i), recs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLock: a --lock-session login's lock and release.
func BenchmarkLock(b *testing.B) {
	benchStores(b, func(b *testing.B, s store.Store) {
		for b.Loop() {
			release, err := s.Lock(b.Context(), "alice")
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
}
