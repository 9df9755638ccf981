package uidlmap

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/store"
)

// BenchmarkNewMailOnStore is what one new message in a 50,000-message
// mailbox costs with the map on SQLite: read the records (the whole map,
// or only the new message's with UIDLsFor), plan, store one.
func BenchmarkNewMailOnStore(b *testing.B) {
	s, err := store.Open(b.Context(), "sqlite:"+filepath.Join(b.TempDir(), "s.db"), "")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := OnStore(s)
	const n = 50_000
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{UIDL: fmt.Sprintf("%08x%08x", i+1, 7), UIDValidity: 7, UID: uint32(i + 1),
			Fingerprint: Fingerprint{Size: 2048, MessageID: fmt.Sprintf("<%d@example.org>", i), Date: "Mon, 1 Dec 2026 10:00:00 +0000", Hash: fmt.Sprintf("%032x", i)}}
	}
	key := Key("alice", "INBOX")
	if err := m.PutUIDLs(b.Context(), key, recs); err != nil {
		b.Fatal(err)
	}
	uid := uint32(n + 1)
	f := Fresh{Derive: func(u uint32) string { return fmt.Sprintf("%08x%08x", u, 7) }, Sep: '~'}
	for _, whole := range []bool{true, false} {
		name := "append"
		if whole {
			name = "whole-map"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				msgs := []Listed{{UID: uid, Size: 10}}
				var p *Plan
				if whole {
					got, err := m.UIDLMap(b.Context(), key)
					if err != nil {
						b.Fatal(err)
					}
					p = NewPlan(got, 7, msgs)
				} else {
					got, err := m.UIDLsFor(b.Context(), key, 7, []uint32{uid}, Candidates(f.Derive(uid), f.Sep, 3))
					if err != nil {
						b.Fatal(err)
					}
					p = NewAppendPlan(got, 7, msgs, 3)
				}
				res := p.Assign(map[uint32]Fingerprint{uid: {Hash: "x"}}, f)
				if len(res.Put) != 1 {
					b.Fatalf("%+v", res)
				}
				if err := m.PutUIDLs(b.Context(), key, res.Put); err != nil {
					b.Fatal(err)
				}
				uid++
			}
		})
	}
}
