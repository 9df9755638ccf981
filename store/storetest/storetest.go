// Package storetest is the conformance suite every store engine passes:
// store tests call Run with a factory for their engine.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

// Opener returns a new, empty store for one test, closed by the test's
// cleanup. again, when not nil, opens another independent handle (its own
// connections) on the same database; the cases that need two writers or two
// lock holders run only then. Handles from again are closed by the caller
// of again.
type Opener func(t *testing.T) (s store.Store, again func() store.Store)

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		fn   func(*testing.T, Opener)
		// contended: the case's own writers compete for the store's
		// lock, whose wait is bounded (SQLite's busy timeout); it runs
		// alone, not beside the others.
		contended bool
	}{
		{"Mailboxes", testMailboxes, false},
		{"MailboxCASRace", testMailboxCASRace, true},
		{"DeviceCredentials", testDeviceCredentials, false},
		{"UIDLs", testUIDLs, false},
		{"Devices", testDevices, false},
		{"DoneMarks", testDoneMarks, false},
		{"Journal", testJournal, false},
		{"JournalConcurrentWriters", testJournalConcurrent, true},
		{"Restores", testRestores, false},
		{"Locks", testLocks, false},
		{"TwoHandles", testTwoHandles, false},
		{"Closed", testClosed, false},
	}
	// Each case opens a store of its own (its own database or file), so
	// the cases run in parallel, most of their time being round trips;
	// the contended ones run first, one at a time (a parallel subtest
	// waits until its parent's loop is done).
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.contended {
				t.Parallel()
			}
			c.fn(t, open)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

// at is a fixed time with microseconds, in a zone other than UTC: the store
// must return the same instant in UTC.
var at = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.FixedZone("X", 3600))

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("%s = %v, want %v in UTC", what, got, want.UTC())
	}
}

func testMailboxes(t *testing.T, open Opener) {
	s, _ := open(t)
	_, err := s.GetMailbox(ctx(t), "alice@example.com")
	wantErr(t, err, store.ErrNotFound)

	grant := []byte{0, 1, 2, 0xff, 'g'}
	m1, err := s.PutMailbox(ctx(t), store.Mailbox{Mailbox: "alice@example.com", Provider: "corp", State: "active", SealedGrant: grant})
	must(t, err)
	if m1.Version != 1 || m1.UpdatedAt.IsZero() || m1.UpdatedAt.Location() != time.UTC {
		t.Fatalf("created %+v, want version 1 and an UpdatedAt in UTC", m1)
	}
	_, err = s.PutMailbox(ctx(t), store.Mailbox{Mailbox: "alice@example.com"})
	wantErr(t, err, store.ErrConflict) // version 0 creates only

	got, err := s.GetMailbox(ctx(t), "alice@example.com")
	must(t, err)
	if !bytes.Equal(got.SealedGrant, grant) || got.Provider != "corp" || got.State != "active" || got.Version != 1 || !got.UpdatedAt.Equal(m1.UpdatedAt) {
		t.Fatalf("got %+v, want %+v", got, m1)
	}

	got.SealedGrant = []byte("rotated")
	got.State = "reenroll"
	m2, err := s.PutMailbox(ctx(t), got)
	must(t, err)
	if m2.Version != 2 {
		t.Fatalf("version after update %d, want 2", m2.Version)
	}
	_, err = s.PutMailbox(ctx(t), got) // still version 1: stale
	wantErr(t, err, store.ErrConflict)
	_, err = s.PutMailbox(ctx(t), store.Mailbox{Mailbox: "nobody@example.com", Version: 3})
	wantErr(t, err, store.ErrConflict)

	_, err = s.PutMailbox(ctx(t), store.Mailbox{Mailbox: "bob@example.com"})
	must(t, err)
	list, err := s.ListMailboxes(ctx(t))
	must(t, err)
	if len(list) != 2 || list[0].Mailbox != "alice@example.com" || list[1].Mailbox != "bob@example.com" ||
		string(list[0].SealedGrant) != "rotated" || list[0].State != "reenroll" || list[1].SealedGrant != nil {
		t.Fatalf("list %+v", list)
	}

	must(t, s.PutDeviceCredential(ctx(t), store.DeviceCredential{Mailbox: "alice@example.com", Device: "phone", Hash: "h"}))
	must(t, s.DeleteMailbox(ctx(t), "alice@example.com"))
	wantErr(t, s.DeleteMailbox(ctx(t), "alice@example.com"), store.ErrNotFound)
	_, err = s.GetMailbox(ctx(t), "alice@example.com")
	wantErr(t, err, store.ErrNotFound)
	creds, err := s.DeviceCredentials(ctx(t), "alice@example.com")
	must(t, err)
	if len(creds) != 0 {
		t.Fatalf("device credentials outlived their mailbox: %+v", creds)
	}
}

// handles returns a new store and, when the engine has them, a second
// handle on the same database (closed at the test's end).
func handles(t *testing.T, open Opener) []store.Store {
	s, again := open(t)
	if again == nil {
		return []store.Store{s}
	}
	s2 := again()
	t.Cleanup(func() { _ = s2.Close() })
	return []store.Store{s, s2}
}

// testMailboxCASRace: many writers put the same version at once; exactly
// one wins, the others get ErrConflict, and the winner's grant is stored.
func testMailboxCASRace(t *testing.T, open Opener) {
	stores := handles(t, open)
	s := stores[0]
	m, err := s.PutMailbox(ctx(t), store.Mailbox{Mailbox: "race@example.com", SealedGrant: []byte("v1")})
	must(t, err)
	const n = 16
	var wg sync.WaitGroup
	results := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			next := m
			next.SealedGrant = fmt.Appendf(nil, "writer-%d", i)
			_, results[i] = stores[i%len(stores)].PutMailbox(ctx(t), next)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("writer %d: %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got, err := s.GetMailbox(ctx(t), "race@example.com")
	must(t, err)
	if got.Version != 2 || string(got.SealedGrant) != fmt.Sprintf("writer-%d", winner) {
		t.Fatalf("stored %+v, want version 2 from writer %d", got, winner)
	}
}

func testDeviceCredentials(t *testing.T, open Opener) {
	s, _ := open(t)
	put := func(mailbox, device, hash string) {
		t.Helper()
		must(t, s.PutDeviceCredential(ctx(t), store.DeviceCredential{Mailbox: mailbox, Device: device, Hash: hash, CreatedAt: at}))
	}
	put("a@x", "scanner", "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA")
	put("a@x", "phone", "h1")
	put("a@x", "phone", "h2") // replaces
	put("b@x", "phone", "other")
	creds, err := s.DeviceCredentials(ctx(t), "a@x")
	must(t, err)
	if len(creds) != 2 || creds[0].Device != "phone" || creds[0].Hash != "h2" || creds[1].Device != "scanner" ||
		creds[1].Hash != "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA" || creds[0].Mailbox != "a@x" {
		t.Fatalf("credentials %+v", creds)
	}
	sameTime(t, "CreatedAt", creds[0].CreatedAt, at)
	must(t, s.DeleteDeviceCredential(ctx(t), "a@x", "phone"))
	wantErr(t, s.DeleteDeviceCredential(ctx(t), "a@x", "phone"), store.ErrNotFound)
	creds, err = s.DeviceCredentials(ctx(t), "a@x")
	must(t, err)
	if len(creds) != 1 || creds[0].Device != "scanner" {
		t.Fatalf("after revoking phone: %+v", creds)
	}
	creds, err = s.DeviceCredentials(ctx(t), "b@x")
	must(t, err)
	if len(creds) != 1 || creds[0].Hash != "other" {
		t.Fatalf("other mailbox: %+v", creds)
	}
}

func testUIDLs(t *testing.T, open Opener) {
	s, _ := open(t)
	m, err := s.UIDLMap(ctx(t), "alice")
	must(t, err)
	if len(m) != 0 {
		t.Fatalf("empty store has UIDLs: %v", m)
	}
	// More records than one multi-row statement takes.
	var recs []store.UIDLRecord
	for i := range 450 {
		recs = append(recs, store.UIDLRecord{
			UIDValidity: 0xFFFFFFFF, UID: uint32(i + 1), UIDL: fmt.Sprintf("old-%04d", i), Size: int64(1000 + i),
			MessageID: fmt.Sprintf("<%d@x>", i), Date: "Tue, 1 Dec 2026 10:00:00 +0000", HeaderHash: fmt.Sprintf("%064x", i),
		})
	}
	recs[10].MessageID = "" // a message without one
	must(t, s.PutUIDLs(ctx(t), "alice", recs))
	must(t, s.PutUIDLs(ctx(t), "bob", recs[:1]))
	got, err := s.UIDLMap(ctx(t), "alice")
	must(t, err)
	if !slices.Equal(got, recs) {
		t.Fatalf("map of %d records differs from the %d put", len(got), len(recs))
	}

	// Rematch after a rebuild: the same UIDLs move to new UIDs; a record
	// put twice in one call keeps the last.
	moved := []store.UIDLRecord{recs[0], recs[1], recs[1]}
	moved[0].UIDValidity, moved[0].UID = 7, 2
	moved[1].UIDValidity, moved[1].UID = 7, 1
	moved[2].UIDValidity, moved[2].UID = 7, 3
	must(t, s.PutUIDLs(ctx(t), "alice", moved))
	got, err = s.UIDLMap(ctx(t), "alice")
	must(t, err)
	if len(got) != 450 || got[0] != moved[0] || got[1] != moved[2] || got[2] != recs[2] {
		t.Fatalf("after the rematch: %d records, first %+v %+v %+v", len(got), got[0], got[1], got[2])
	}
	bob, err := s.UIDLMap(ctx(t), "bob")
	must(t, err)
	if len(bob) != 1 || bob[0] != recs[0] {
		t.Fatalf("keys not apart: %+v", bob)
	}
	must(t, s.PutUIDLs(ctx(t), "alice", nil))

	// UIDLsFor: by (UIDValidity, UID) and by UIDL, in batches larger than
	// one statement takes; nothing of another key or UIDValidity.
	var uids []uint32
	for i := range 300 {
		uids = append(uids, uint32(i+3))
	}
	uidls := []string{"old-0449", "old-0448", "nothing"}
	for i := range 250 {
		uidls = append(uidls, fmt.Sprintf("none-%d", i))
	}
	near, err := s.UIDLsFor(ctx(t), "alice", 0xFFFFFFFF, uids, uidls)
	must(t, err)
	seen := map[string]bool{}
	for _, r := range near {
		seen[r.UIDL] = true
	}
	// UIDs 3..302 of 0xFFFFFFFF are old-0002..old-0301; old-0000 and
	// old-0001 moved to UIDVALIDITY 7 and are not asked for.
	if len(seen) != 302 || !seen["old-0002"] || !seen["old-0301"] || !seen["old-0449"] || seen["old-0000"] || seen["old-0302"] {
		t.Fatalf("UIDLsFor: %d distinct records", len(seen))
	}
	for _, r := range near {
		if r.UIDL == "old-0449" && r != recs[449] {
			t.Fatalf("UIDLsFor record %+v, want %+v", r, recs[449])
		}
	}
	none, err := s.UIDLsFor(ctx(t), "carol", 7, []uint32{1, 2}, []string{"old-0000"})
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("another key: %+v", none)
	}
}

func testDevices(t *testing.T, open Opener) {
	s, _ := open(t)
	must(t, s.TouchDevice(ctx(t), "alice", "phone", at))
	must(t, s.TouchDevice(ctx(t), "alice", "desktop", at.Add(time.Hour)))
	must(t, s.TouchDevice(ctx(t), "alice", "phone", at.Add(-time.Hour))) // older: ignored
	must(t, s.TouchDevice(ctx(t), "bob", "phone", at))
	devs, err := s.Devices(ctx(t), "alice")
	must(t, err)
	if len(devs) != 2 || devs[0].Name != "desktop" || devs[1].Name != "phone" {
		t.Fatalf("devices %+v", devs)
	}
	sameTime(t, "desktop last seen", devs[0].LastSeen, at.Add(time.Hour))
	sameTime(t, "phone last seen", devs[1].LastSeen, at)
	must(t, s.TouchDevice(ctx(t), "alice", "phone", at.Add(2*time.Hour)))
	devs, err = s.Devices(ctx(t), "alice")
	must(t, err)
	sameTime(t, "phone last seen", devs[1].LastSeen, at.Add(2*time.Hour))
}

func testDoneMarks(t *testing.T, open Opener) {
	s, _ := open(t)
	must(t, s.MarkDone(ctx(t), "alice", "phone", 5, []uint32{3, 1, 3}, at))
	must(t, s.MarkDone(ctx(t), "alice", "desktop", 5, []uint32{1}, at.Add(time.Minute)))
	must(t, s.MarkDone(ctx(t), "alice", "phone", 5, []uint32{1}, at.Add(time.Hour))) // again: first time kept
	must(t, s.MarkDone(ctx(t), "alice", "phone", 6, []uint32{1}, at))
	must(t, s.MarkDone(ctx(t), "bob", "phone", 5, []uint32{2}, at))
	must(t, s.MarkDone(ctx(t), "alice", "phone", 5, nil, at))
	done, err := s.Done(ctx(t), "alice", 5)
	must(t, err)
	want := []store.DoneRecord{
		{Device: "desktop", UIDValidity: 5, UID: 1, At: at.Add(time.Minute).UTC()},
		{Device: "phone", UIDValidity: 5, UID: 1, At: at.UTC()},
		{Device: "phone", UIDValidity: 5, UID: 3, At: at.UTC()},
	}
	if len(done) != len(want) {
		t.Fatalf("done %+v, want %+v", done, want)
	}
	for i := range want {
		if done[i].Device != want[i].Device || done[i].UID != want[i].UID || done[i].UIDValidity != 5 {
			t.Fatalf("done %+v, want %+v", done, want)
		}
		sameTime(t, "done at", done[i].At, want[i].At)
	}

	// Forgetting removes every device's marks of those UIDs, of that
	// UIDVALIDITY and key only.
	must(t, s.ForgetDone(ctx(t), "alice", 5, []uint32{1, 9}))
	must(t, s.ForgetDone(ctx(t), "alice", 5, nil))
	done, err = s.Done(ctx(t), "alice", 5)
	must(t, err)
	if len(done) != 1 || done[0].Device != "phone" || done[0].UID != 3 {
		t.Fatalf("after forgetting UID 1: %+v, want phone's UID 3 only", done)
	}
	for _, other := range []struct {
		key string
		uv  uint32
	}{{"alice", 6}, {"bob", 5}} {
		d, err := s.Done(ctx(t), other.key, other.uv)
		must(t, err)
		if len(d) != 1 {
			t.Fatalf("%s/%d lost its marks: %+v", other.key, other.uv, d)
		}
	}

	// More UIDs than one statement takes: every one is marked and forgotten.
	many := make([]uint32, 1000)
	for i := range many {
		many[i] = uint32(1000 + i)
	}
	must(t, s.MarkDone(ctx(t), "carol", "phone", 7, many, at))
	must(t, s.ForgetDone(ctx(t), "carol", 7, many[1:]))
	if d, err := s.Done(ctx(t), "carol", 7); err != nil || len(d) != 1 || d[0].UID != 1000 {
		t.Fatalf("after forgetting 999 of 1000 marks: %d left (%v), want UID 1000 only", len(d), err)
	}
}

func journalEntry(user, device string, t time.Time, uid uint32) store.JournalEntry {
	return store.JournalEntry{
		Time: t, User: user, Device: device, ClientAddr: "192.0.2.1:5000", SessionID: "s-1", Mailbox: "INBOX",
		UIDValidity: 0xFFFFFFFE, UID: uid, MessageID: fmt.Sprintf("<%d@x>", uid), Date: "Tue, 1 Dec 2026 10:00:00 +0000",
		Size: 1234, Policy: "honor", Action: "expunge", Detail: "",
	}
}

func testJournal(t *testing.T, open Opener) {
	s, _ := open(t)
	entries := []store.JournalEntry{
		journalEntry("alice", "phone", at, 1),
		journalEntry("alice", "", at.Add(time.Hour), 2),
		journalEntry("bob", "", at.Add(2*time.Hour), 3),
	}
	entries[2].Outcome = "dry-run"
	entries[2].Detail = "move to Trash"
	ids, err := s.AppendJournal(ctx(t), entries)
	must(t, err)
	if len(ids) != 3 || !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("ids %v", ids)
	}
	all, err := s.Journal(ctx(t), store.JournalQuery{})
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("journal %+v", all)
	}
	for i, e := range all {
		want := entries[i]
		want.ID = ids[i]
		want.Time = want.Time.UTC()
		if i < 2 {
			want.Outcome = store.OutcomePending
		}
		if e != want {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, e, want)
		}
	}
	must(t, s.SetJournalOutcome(ctx(t), ids[:2], "applied"))
	alice, err := s.Journal(ctx(t), store.JournalQuery{User: "alice"})
	must(t, err)
	if len(alice) != 2 || alice[0].Outcome != "applied" || alice[1].Outcome != "applied" {
		t.Fatalf("alice %+v", alice)
	}
	check := func(q store.JournalQuery, wantUIDs ...uint32) {
		t.Helper()
		got, err := s.Journal(ctx(t), q)
		must(t, err)
		var uids []uint32
		for _, e := range got {
			uids = append(uids, e.UID)
		}
		if !slices.Equal(uids, wantUIDs) {
			t.Fatalf("query %+v: UIDs %v, want %v", q, uids, wantUIDs)
		}
	}
	check(store.JournalQuery{User: "alice", Device: "phone"}, 1)
	check(store.JournalQuery{Since: at.Add(time.Hour)}, 2, 3)
	check(store.JournalQuery{Since: at, Until: at.Add(time.Hour)}, 1)
	check(store.JournalQuery{MessageID: "<3@x>"}, 3)
	check(store.JournalQuery{Limit: 2}, 1, 2)
	check(store.JournalQuery{User: "carol"})

	n, err := s.PruneJournal(ctx(t), at.Add(90*time.Minute))
	must(t, err)
	if n != 2 {
		t.Fatalf("pruned %d, want 2", n)
	}
	check(store.JournalQuery{}, 3)
	ids2, err := s.AppendJournal(ctx(t), nil)
	must(t, err)
	if len(ids2) != 0 {
		t.Fatalf("ids for no entries: %v", ids2)
	}
}

// testJournalConcurrent: writers on every handle append at once; nothing
// is lost and every ID is distinct.
func testJournalConcurrent(t *testing.T, open Opener) {
	stores := handles(t, open)
	s := stores[0]
	const writers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	idc := make(chan []int64, writers*each)
	for w := range writers {
		wg.Go(func() {
			st := stores[w%len(stores)]
			for i := range each {
				ids, err := st.AppendJournal(ctx(t), []store.JournalEntry{
					journalEntry(fmt.Sprintf("user%d", w), "", at, uint32(i)),
					journalEntry(fmt.Sprintf("user%d", w), "", at, uint32(i+1000)),
				})
				if err == nil {
					err = st.PutUIDLs(ctx(t), fmt.Sprintf("user%d", w), []store.UIDLRecord{{UIDValidity: 1, UID: uint32(i), UIDL: fmt.Sprint(i)}})
				}
				if err != nil {
					errs <- err
					return
				}
				idc <- ids
			}
		})
	}
	wg.Wait()
	close(errs)
	close(idc)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for ids := range idc {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("id %d given twice", id)
			}
			seen[id] = true
		}
	}
	all, err := s.Journal(ctx(t), store.JournalQuery{})
	must(t, err)
	if len(all) != writers*each*2 || len(seen) != len(all) {
		t.Fatalf("%d entries, %d ids, want %d", len(all), len(seen), writers*each*2)
	}
	for w := range writers {
		m, err := s.UIDLMap(ctx(t), fmt.Sprintf("user%d", w))
		must(t, err)
		if len(m) != each {
			t.Fatalf("user%d: %d UIDLs, want %d", w, len(m), each)
		}
	}
}

func testRestores(t *testing.T, open Opener) {
	s, _ := open(t)
	id1, err := s.QueueRestore(ctx(t), store.Restore{User: "alice", Since: at, RequestedAt: at.Add(time.Hour)})
	must(t, err)
	id2, err := s.QueueRestore(ctx(t), store.Restore{User: "alice", MessageID: "<1@x>", JournalID: 42, Outcome: "ignored"})
	must(t, err)
	_, err = s.QueueRestore(ctx(t), store.Restore{User: "bob"})
	must(t, err)
	pending, err := s.PendingRestores(ctx(t), "alice")
	must(t, err)
	if len(pending) != 2 || pending[0].ID != id1 || pending[1].ID != id2 || pending[1].JournalID != 42 ||
		pending[1].MessageID != "<1@x>" || pending[0].Outcome != store.OutcomePending || pending[1].Outcome != store.OutcomePending ||
		pending[0].User != "alice" || !pending[0].FinishedAt.IsZero() {
		t.Fatalf("pending %+v", pending)
	}
	sameTime(t, "Since", pending[0].Since, at)
	sameTime(t, "RequestedAt", pending[0].RequestedAt, at.Add(time.Hour))
	must(t, s.FinishRestore(ctx(t), id1, "restored"))
	wantErr(t, s.FinishRestore(ctx(t), id1+id2+1000, "restored"), store.ErrNotFound)
	pending, err = s.PendingRestores(ctx(t), "alice")
	must(t, err)
	if len(pending) != 1 || pending[0].ID != id2 {
		t.Fatalf("pending after finishing %d: %+v", id1, pending)
	}
}

func testLocks(t *testing.T, open Opener) {
	s, _ := open(t)
	release, err := s.Lock(ctx(t), "alice")
	must(t, err)
	_, err = s.Lock(ctx(t), "alice")
	wantErr(t, err, store.ErrLocked)
	releaseBob, err := s.Lock(ctx(t), "bob")
	must(t, err)
	release()
	release() // twice: harmless, and frees nothing else
	_, err = s.Lock(ctx(t), "bob")
	wantErr(t, err, store.ErrLocked)
	release2, err := s.Lock(ctx(t), "alice")
	must(t, err)
	release2()
	releaseBob()

	// Many contenders for one key: exactly one holds it at a time.
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	holders, maxHolders := 0, 0
	for range n {
		wg.Go(func() {
			for range 5 {
				rel, err := s.Lock(ctx(t), "contended")
				if errors.Is(err, store.ErrLocked) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				holders++
				maxHolders = max(maxHolders, holders)
				mu.Unlock()
				runtime.Gosched() // let another contender try meanwhile
				mu.Lock()
				holders--
				mu.Unlock()
				rel()
			}
		})
	}
	wg.Wait()
	if maxHolders != 1 {
		t.Fatalf("%d holders of one lock at once", maxHolders)
	}
}

// testTwoHandles: a second handle on the same database sees the first's
// writes, and a lock held on one is refused on the other until released or
// until the holding handle closes.
func testTwoHandles(t *testing.T, open Opener) {
	s, again := open(t)
	if again == nil {
		t.Skip("this engine has no second handle on one database (in-memory)")
	}
	s2 := again()
	defer s2.Close()
	_, err := s.PutMailbox(ctx(t), store.Mailbox{Mailbox: "shared@x", SealedGrant: []byte("g")})
	must(t, err)
	m, err := s2.GetMailbox(ctx(t), "shared@x")
	must(t, err)
	if string(m.SealedGrant) != "g" {
		t.Fatalf("second handle reads %+v", m)
	}
	release, err := s.Lock(ctx(t), "shared@x")
	must(t, err)
	_, err = s2.Lock(ctx(t), "shared@x")
	wantErr(t, err, store.ErrLocked)
	release()
	release2, err := s2.Lock(ctx(t), "shared@x")
	must(t, err)
	release2()

	// Closing a handle frees its locks.
	s3 := again()
	_, err = s3.Lock(ctx(t), "held-by-closed")
	must(t, err)
	_, err = s2.Lock(ctx(t), "held-by-closed")
	wantErr(t, err, store.ErrLocked)
	must(t, s3.Close())
	rel, err := s2.Lock(ctx(t), "held-by-closed")
	must(t, err)
	rel()
}

func testClosed(t *testing.T, open Opener) {
	s, _ := open(t)
	must(t, s.Ping(ctx(t)))
	_ = s.Close()
	wantErr(t, s.Ping(ctx(t)), store.ErrUnavailable)
	_, err := s.AppendJournal(ctx(t), []store.JournalEntry{journalEntry("a", "", at, 1)})
	wantErr(t, err, store.ErrUnavailable)
}
