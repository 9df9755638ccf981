package upstream

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/pop3server"
)

// Read-ahead against a real Dovecot (docs/prefetch.md). Round trips are
// counted through the recording proxy; nothing here is timed.

const (
	pfSession = 16 << 10 // a session's limit: windows of 8 KiB, bodies up to 2 KiB ahead
	pfSmall   = 1000     // seeded message size
	pfSeeded  = 100
)

// prefetchEnv is a mailbox of pfSeeded small messages, then a large one
// (never fetched ahead) and four more small ones, behind a recording proxy.
type prefetchEnv struct {
	*dovecotEnv
	user   string
	proxy  *recordingProxy
	stored []testenv.StoredMessage
	budget *cache.Budget
	b      *Backend
}

func newPrefetchEnv(t *testing.T, budget int64) *prefetchEnv {
	t.Helper()
	e := startDovecot(t)
	pe := &prefetchEnv{dovecotEnv: e, user: e.user(t), budget: cache.NewBudget(budget)}
	seedMaildir(t, e.d, pe.user, pfSeeded, pfSmall)
	e.d.Append(t, pe.user, "INBOX", testMessage("large", 300)) // ~7 KiB
	for i := range 4 {
		e.d.Append(t, pe.user, "INBOX", testMessage(subject(i), 10))
	}
	pe.stored = e.d.Messages(t, pe.user, "INBOX")
	pe.proxy = startRecordingProxy(t, e.d.IMAPAddr)
	pe.b = newBackend(t, pe.proxy.url(), func(o *Options) {
		o.Prefetch = PrefetchOptions{Budget: pe.budget, SessionBytes: pfSession}
	})
	return pe
}

// fetches returns the UID FETCH commands recorded since the last take and
// every UID they asked for.
func (pe *prefetchEnv) fetches(t *testing.T) (cmds []string, uids []imap.UID) {
	t.Helper()
	for _, c := range pe.proxy.take() {
		f := strings.Fields(c)
		if len(f) < 3 || !strings.EqualFold(f[0], "UID") || !strings.EqualFold(f[1], "FETCH") {
			continue
		}
		cmds = append(cmds, c)
		for _, r := range strings.Split(f[2], ",") {
			lo, hi, _ := strings.Cut(r, ":")
			a, err := strconv.ParseUint(lo, 10, 32)
			if err != nil {
				t.Fatalf("UID set %q in %q", f[2], c)
			}
			b := a
			if hi != "" {
				if b, err = strconv.ParseUint(hi, 10, 32); err != nil {
					t.Fatalf("UID set %q in %q", f[2], c)
				}
			}
			for u := a; u <= b; u++ {
				uids = append(uids, imap.UID(u))
			}
		}
	}
	return cmds, uids
}

// header is the stored message's header with its blank line.
func header(msg []byte) []byte {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	return msg[:i+4]
}

// TestDovecotPrefetchRoundTrips: reading every message in order costs
// about one UID FETCH per window, not one per message, for RETR and for a
// TOP n 0 scan; every octet is the stored message's; only UIDs of the
// snapshot are asked for; the session never holds more than its limit,
// and gives everything back at the end.
func TestDovecotPrefetchRoundTrips(t *testing.T) {
	pe := newPrefetchEnv(t, 1<<20)
	ctx := context.Background()
	n := len(pe.stored)
	// perWindow is how many small messages one window holds: the
	// reservation is RFC822.SIZE for RETR and the same for a header
	// (a header reserves min(size, 16 KiB)).
	perWindow := (pfSession / 2) / pfSmall
	for _, tc := range []struct {
		name  string
		open  func(m *maildrop, i int) (pop3server.Body, error)
		want  func(i int) []byte
		large int // UID FETCH commands beyond the windows: the large message streams alone for RETR
	}{
		{"RETR", func(m *maildrop, i int) (pop3server.Body, error) { return m.Retrieve(ctx, i) },
			func(i int) []byte { return pe.stored[i-1].Body }, 1},
		{"TOP n 0", func(m *maildrop, i int) (pop3server.Body, error) { return m.Top(ctx, i, 0) },
			func(i int) []byte { return header(pe.stored[i-1].Body) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := pe.login(t, pe.b, pe.user)
			pe.proxy.take()
			// Mail that arrives after login is outside the snapshot:
			// never fetched, ahead or not.
			late := pe.d.Append(t, pe.user, "INBOX", testMessage("late", 3))
			for i := 1; i <= n; i++ {
				body, err := tc.open(m, i)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if got := readAll(t, body); !bytes.Equal(got, tc.want(i)) {
					t.Fatalf("message %d (UID %d): got %d octets, not the stored ones", i, pe.stored[i-1].UID, len(got))
				}
				if held := m.pf.bodies.Held(); held > pfSession {
					t.Fatalf("session holds %d octets, limit %d", held, pfSession)
				}
				if i == 1 && len(m.pf.batches) != 1 {
					// Pipelined: the second window is asked for while the
					// first one is still being served.
					t.Fatalf("after message 1, %d windows outstanding, want 1", len(m.pf.batches))
				}
			}
			cmds, uids := pe.fetches(t)
			for _, u := range uids {
				if u == late || u > pe.stored[n-1].UID {
					t.Errorf("fetched UID %d, outside the snapshot", u)
				}
			}
			// About n / perWindow commands: the windows, plus one
			// for the large message and one for the window cut
			// short by it.
			want := (n+perWindow-1)/perWindow + tc.large + 1
			t.Logf("%d messages in %d UID FETCH commands, e.g. %q", n, len(cmds), cmds[0])
			if len(cmds) > want || len(cmds) < n/perWindow {
				t.Errorf("%d messages cost %d UID FETCH commands, want about %d (%d per window):\n%s",
					n, len(cmds), want, perWindow, strings.Join(cmds, "\n"))
			}
			if p := m.pf.bodies.Peak(); p > pfSession || p == 0 {
				t.Errorf("session peak %d octets, limit %d", p, pfSession)
			}
			m.Close()
			if u := pe.budget.Used(); u != 0 {
				t.Errorf("%d octets still held after Close", u)
			}
			pe.d.Expunge(t, pe.user, "INBOX", late)
		})
	}
}

// TestDovecotPrefetchExpunged: a message another client expunged before
// its window was fetched answers -ERR; one expunged after its window was
// fetched is served, with its own octets; no message ever gets another's.
func TestDovecotPrefetchExpunged(t *testing.T) {
	pe := newPrefetchEnv(t, 1<<20)
	ctx := context.Background()
	m := pe.login(t, pe.b, pe.user)
	body, err := m.Retrieve(ctx, 1) // fetches the first window, sends the second
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, body)
	early, late := 3, pfSeeded-1 // in the first window; beyond the second
	if !m.pf.bodies.Filled(bodyKey(pe.stored[early-1].UID, aheadWhole)) {
		t.Fatalf("message %d not fetched ahead by RETR 1", early)
	}
	pe.d.Expunge(t, pe.user, "INBOX", pe.stored[early-1].UID, pe.stored[late-1].UID)
	for i := 2; i <= len(pe.stored); i++ {
		body, err := m.Retrieve(ctx, i)
		if i == late {
			wantCode(t, err, pop3server.ErrNoSuchMessage)
			continue
		}
		if err != nil {
			t.Fatalf("RETR %d: %v", i, err)
		}
		if got := readAll(t, body); !bytes.Equal(got, pe.stored[i-1].Body) {
			t.Fatalf("RETR %d: not message %d's octets", i, i)
		}
	}
	// The session goes on after -ERR, and TOP of the gone message also
	// answers -ERR, before anything is written.
	_, err = m.Top(ctx, late, 5)
	wantCode(t, err, pop3server.ErrNoSuchMessage)
	if body, err = m.Top(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	readAll(t, body)
}

// TestDovecotPrefetchStopMidway: a session that stops reading with a
// window on its way leaves no goroutine and no octet behind, whether it
// ends with QUIT, with a body left open, or on a dead connection.
func TestDovecotPrefetchStopMidway(t *testing.T) {
	pe := newPrefetchEnv(t, 1<<20)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	for _, end := range []string{"quit", "open body", "dead upstream"} {
		t.Run(end, func(t *testing.T) {
			mb, err := pe.b.Login(ctx, testConn, pe.user, pe.user+"-pw")
			if err != nil {
				t.Fatal(err)
			}
			m := mb.(*maildrop)
			var body pop3server.Body
			for i := 1; i <= 5; i++ {
				if body, err = m.Retrieve(ctx, i); err != nil {
					t.Fatal(err)
				}
				if i < 5 || end != "open body" {
					readAll(t, body)
				}
			}
			if len(m.pf.batches) == 0 || pe.budget.Used() == 0 {
				t.Fatalf("no window on its way (%d batches, %d octets held)", len(m.pf.batches), pe.budget.Used())
			}
			switch end {
			case "quit":
				if err := m.Update(ctx, pop3server.Marks{Retrieved: []int{1, 2}}); err != nil {
					t.Fatal(err)
				}
			case "dead upstream":
				m.l.raw.Close()
			}
			m.Close()
			if u := pe.budget.Used(); u != 0 {
				t.Errorf("%d octets held after Close", u)
			}
			body.Close() // a body closed after its session gives nothing back twice
			if u := pe.budget.Used(); u != 0 {
				t.Errorf("%d octets held after the late Close", u)
			}
		})
	}
}

// TestDovecotPrefetchBudgets: 200 sessions reading at once never hold
// more than the global budget nor each more than its limit, every octet
// is right, and everything is given back.
func TestDovecotPrefetchBudgets(t *testing.T) {
	const sessions = 200
	e := &dovecotEnv{d: testenv.StartDovecot(t, testenv.DovecotOptions{ExtraConfig: `
service imap {
  client_limit = 50
  service_count = 0
}
`})}
	user := e.user(t)
	seedMaildir(t, e.d, user, 40, pfSmall)
	stored := e.d.Messages(t, user, "INBOX")
	budget := cache.NewBudget(64 << 10) // room for 8 sessions' full limits
	b := e.backend(t, func(o *Options) { o.Prefetch = PrefetchOptions{Budget: budget, SessionBytes: pfSession} })
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for s := range sessions {
		wg.Go(func() {
			mb, err := b.Login(ctx, testConn, user, user+"-pw")
			if err != nil {
				errs <- err
				return
			}
			m := mb.(*maildrop)
			defer m.Close()
			for i := 1; i <= len(stored); i++ {
				var body pop3server.Body
				if s%2 == 0 {
					body, err = m.Retrieve(ctx, i)
				} else {
					body, err = m.Top(ctx, i, 0)
				}
				if err != nil {
					errs <- fmt.Errorf("session %d, message %d: %w", s, i, err)
					return
				}
				var buf bytes.Buffer
				_, err = buf.ReadFrom(body)
				body.Close()
				want := stored[i-1].Body
				if s%2 == 1 {
					want = header(want)
				}
				if err != nil || !bytes.Equal(buf.Bytes(), want) {
					errs <- fmt.Errorf("session %d, message %d: wrong octets (%v)", s, i, err)
					return
				}
				if h := m.pf.bodies.Held(); h > pfSession {
					errs <- fmt.Errorf("session %d holds %d octets, limit %d", s, h, pfSession)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := budget.Peak(); p > budget.Limit() || p == 0 {
		t.Errorf("global peak %d octets, budget %d", p, budget.Limit())
	}
	if u := budget.Used(); u != 0 {
		t.Errorf("%d octets held after every session closed", u)
	}
}

// TestDovecotPrefetchPipelinedOutOfOrder: pipelined RETRs in no particular
// order (pop3server's hint, Prefetcher.Upcoming) cost one UID FETCH for
// all of them, and each gets its own octets.
func TestDovecotPrefetchPipelinedOutOfOrder(t *testing.T) {
	pe := newPrefetchEnv(t, 1<<20)
	ctx := context.Background()
	m := pe.login(t, pe.b, pe.user)
	pe.proxy.take()
	body, err := m.Retrieve(ctx, 50) // not in order: fetched alone
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, body)
	next := []int{20, 5, 60}
	m.Upcoming(ctx, next, nil) // what pop3server sees buffered behind RETR 50
	for _, n := range next {
		body, err := m.Retrieve(ctx, n)
		if err != nil {
			t.Fatalf("RETR %d: %v", n, err)
		}
		if got := readAll(t, body); !bytes.Equal(got, pe.stored[n-1].Body) {
			t.Fatalf("RETR %d: not its octets", n)
		}
	}
	if cmds, _ := pe.fetches(t); len(cmds) != 2 {
		t.Errorf("RETR 50 and pipelined RETR 20, 5, 60 cost %d UID FETCH commands, want 2:\n%s", len(cmds), strings.Join(cmds, "\n"))
	}
	if pe.budget.Served() != uint64(len(next)) {
		t.Errorf("%d served from read-ahead, want %d", pe.budget.Served(), len(next))
	}
}
