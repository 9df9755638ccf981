package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/uidlmap"
)

// memUIDLs is an in-memory uidlmap.Store that can be made to fail.
type memUIDLs struct {
	mu    sync.Mutex
	m     map[string]map[string]uidlmap.Record
	fail  bool
	puts  int
	reads int // whole-map reads
}

var _ uidlmap.NearStore = (*memUIDLs)(nil)

func (s *memUIDLs) UIDLsFor(_ context.Context, key string, v uint32, uids []uint32, uidls []string) ([]uidlmap.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errStoreDown
	}
	var out []uidlmap.Record
	for _, r := range s.m[key] {
		if (r.UIDValidity == v && slices.Contains(uids, r.UID)) || slices.Contains(uidls, r.UIDL) {
			out = append(out, r)
		}
	}
	return out, nil
}

var errStoreDown = errors.New("store down")

func (s *memUIDLs) UIDLMap(_ context.Context, key string) ([]uidlmap.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errStoreDown
	}
	s.reads++
	var out []uidlmap.Record
	for _, r := range s.m[key] {
		out = append(out, r)
	}
	return out, nil
}

func (s *memUIDLs) PutUIDLs(_ context.Context, key string, recs []uidlmap.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errStoreDown
	}
	if s.m == nil {
		s.m = map[string]map[string]uidlmap.Record{}
	}
	if s.m[key] == nil {
		s.m[key] = map[string]uidlmap.Record{}
	}
	for _, r := range recs {
		s.m[key][r.UIDL] = r
	}
	s.puts++
	return nil
}

func (s *memUIDLs) setFail(fail bool) { s.mu.Lock(); s.fail = fail; s.mu.Unlock() }

func (s *memUIDLs) len(key string) int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.m[key]) }

// assignments records UIDLObserver calls.
type assignments struct {
	recorder
	mu    sync.Mutex
	calls []string
}

func (a *assignments) UIDLsAssigned(rematch bool, matched, fresh, ambiguous int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("rematch=%v matched=%d fresh=%d ambiguous=%d", rematch, matched, fresh, ambiguous))
}

func (a *assignments) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) == 0 {
		return ""
	}
	return a.calls[len(a.calls)-1]
}

// uidlsBySubject logs in and returns each message's UIDL by subject.
func uidlsBySubject(t *testing.T, b *Backend) map[string]string {
	t.Helper()
	m := login(t, b)
	out := map[string]string{}
	for n, info := range m.Messages() {
		body, err := m.Top(context.Background(), n+1, 0)
		if err != nil {
			t.Fatal(err)
		}
		hdr := string(readAll(t, body))
		var subj string
		for _, line := range splitLines(hdr) {
			if len(line) > 9 && line[:9] == "Subject: " {
				subj = line[9:]
			}
		}
		if _, dup := out[subj]; dup {
			subj += "#2"
		}
		out[subj] = info.UIDL
	}
	m.Close()
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, trimCR(s[start:i]))
			start = i + 1
		}
	}
	return out
}

func trimCR(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\r' {
		return s[:len(s)-1]
	}
	return s
}

// TestUIDLContinuity runs a mailbox through the life cycle of docs/migration.md
// against imapmemserver: derived UIDLs with an empty store, new mail
// recorded incrementally, a UIDVALIDITY change that keeps every surviving
// message's UIDL, and a store that goes down.
func TestUIDLContinuity(t *testing.T) {
	checkGoroutines(t)
	s := startMem(t, capsFull)
	const box = "Box"
	if err := s.user.Create(box, nil); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"a", "b", "c"} {
		s.append(t, box, testMessage(subj, 2))
	}
	st := &memUIDLs{}
	obs := &assignments{recorder: recorder{commands: map[string]int{}, applied: map[string]int{}}}
	listings, err := cache.NewListings(10)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, s.url(), func(o *Options) {
		o.Mailbox, o.UIDLs, o.Cache, o.Metrics = box, st, listings, obs
	})
	plain := newBackend(t, s.url(), func(o *Options) { o.Mailbox = box })
	key := uidlmap.Key(testUser, box)

	// An empty store changes nothing a client sees.
	first := uidlsBySubject(t, b)
	if want := uidlsBySubject(t, plain); fmt.Sprint(first) != fmt.Sprint(want) {
		t.Fatalf("with an empty store %v, without %v", first, want)
	}
	if st.len(key) != 3 || obs.last() != "rematch=false matched=0 fresh=3 ambiguous=0" {
		t.Fatalf("records %d, assignment %q", st.len(key), obs.last())
	}

	// An unchanged mailbox is served from the cache: the store is not read.
	st.setFail(true)
	if got := uidlsBySubject(t, b); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Fatalf("cached login %v, want %v", got, first)
	}
	// New mail needs the store: down, the login fails with [SYS/TEMP]
	// rather than show a UIDL that might differ.
	s.append(t, box, testMessage("d", 2))
	_, err = b.Login(context.Background(), testConn, testUser, testPass)
	wantCode(t, err, pop3server.ErrTemporary)
	st.setFail(false)
	reads := st.reads
	withD := uidlsBySubject(t, b)
	if st.reads != reads {
		t.Errorf("new mail read the whole UIDL map %d times, want only its own records", st.reads-reads)
	}
	if want := uidlsBySubject(t, plain); fmt.Sprint(withD) != fmt.Sprint(want) || st.len(key) != 4 {
		t.Fatalf("after new mail %v (records %d), want %v", withD, st.len(key), want)
	}
	if obs.last() != "rematch=false matched=0 fresh=1 ambiguous=0" {
		t.Fatalf("new mail: %q, want only the new message assigned", obs.last())
	}

	// Another client expunges b: a full listing, whose UIDLs come from
	// the cached listing, not from a read of the whole map.
	expungeUID(t, s.addr, box, 2)
	reads = st.reads
	afterExpunge := uidlsBySubject(t, b)
	if st.reads != reads || len(afterExpunge) != 3 || afterExpunge["a"] != withD["a"] || afterExpunge["d"] != withD["d"] {
		t.Errorf("after an expunge: %v (whole-map reads %d), want %v without b", afterExpunge, st.reads-reads, withD)
	}

	// The mailbox is recreated (new UIDVALIDITY) in another order, b is
	// gone and e is new.
	if err := s.user.Delete(box); err != nil {
		t.Fatal(err)
	}
	if err := s.user.Create(box, nil); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"d", "c", "e", "a"} {
		s.append(t, box, testMessage(subj, 2))
	}
	after := uidlsBySubject(t, b)
	derived := uidlsBySubject(t, plain)
	for _, subj := range []string{"a", "c", "d"} {
		if after[subj] != withD[subj] {
			t.Errorf("%s: UIDL %q after the change, %q before", subj, after[subj], withD[subj])
		}
	}
	if after["e"] != derived["e"] || len(after) != 4 {
		t.Errorf("new message e: %q, want the derived %q (all: %v)", after["e"], derived["e"], after)
	}
	if obs.last() != "rematch=true matched=3 fresh=1 ambiguous=0" {
		t.Errorf("rematch: %q", obs.last())
	}

	// A restarted bridge (empty cache) reads the same UIDLs back.
	restarted := newBackend(t, s.url(), func(o *Options) { o.Mailbox, o.UIDLs = box, st })
	puts := st.puts
	if got := uidlsBySubject(t, restarted); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Errorf("after a restart %v, want %v", got, after)
	}
	if st.puts != puts {
		t.Errorf("a restart stored %d times, want nothing", st.puts-puts)
	}
}

// expungeUID expunges uid from mailbox as another IMAP client would.
func expungeUID(t *testing.T, addr, mailbox string, uid imap.UID) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	set := imap.UIDSetNum(uid)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.Logout().Wait()
}

// TestUIDLRecordInChunks records a mailbox larger than the per-login chunk
// over several logins: every login shows the derived UIDLs, the map fills
// up chunk by chunk, and once full a recreated mailbox keeps them all.
func TestUIDLRecordInChunks(t *testing.T) {
	s := startMem(t, capsFull)
	const box = "Big"
	if err := s.user.Create(box, nil); err != nil {
		t.Fatal(err)
	}
	subjects := []string{"m1", "m2", "m3", "m4", "m5"}
	for _, subj := range subjects {
		s.append(t, box, testMessage(subj, 1))
	}
	st := &memUIDLs{}
	listings, err := cache.NewListings(10)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, s.url(), func(o *Options) { o.Mailbox, o.UIDLs, o.Cache, o.uidlChunk = box, st, listings, 2 })
	plain := newBackend(t, s.url(), func(o *Options) { o.Mailbox = box })
	key := uidlmap.Key(testUser, box)
	want := uidlsBySubject(t, plain)
	for i, recorded := range []int{2, 5, 5} { // the rest fits the append path
		if got := uidlsBySubject(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("login %d: %v, want the derived %v", i+1, got, want)
		}
		if st.len(key) != recorded {
			t.Fatalf("login %d: %d recorded, want %d", i+1, st.len(key), recorded)
		}
	}
	if err := s.user.Delete(box); err != nil {
		t.Fatal(err)
	}
	if err := s.user.Create(box, nil); err != nil {
		t.Fatal(err)
	}
	for _, subj := range slices.Backward(subjects) {
		s.append(t, box, testMessage(subj, 1))
	}
	if got := uidlsBySubject(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the recreation %v, want %v", got, want)
	}
}
