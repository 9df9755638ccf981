package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/pop3server"
)

// Idle release (release.go) against a real Dovecot. The tests call
// Release where pop3server would after ReleaseAfter of silence, except
// TestDovecotReleaseOverPOP3, which goes through pop3server; nothing here
// is timed.

// releaseCorpus is dovecotCorpus with a large message that streams
// instead of its 20 MiB one, and small messages the read-ahead fetches.
func releaseCorpus() [][]byte {
	corpus := dovecotCorpus()
	corpus = corpus[:len(corpus)-1]
	big := bytes.NewBufferString("Subject: 300 KiB\r\n\r\n")
	for i := 0; big.Len() < 300<<10; i++ {
		fmt.Fprintf(big, "%07d the quick brown fox jumps over the lazy dog 0123456789\r\n", i)
	}
	corpus = append(corpus, big.Bytes())
	for i := range 5 {
		corpus = append(corpus, testMessage(subject(i), 10))
	}
	return corpus
}

// releaseUser is a new user whose INBOX holds releaseCorpus, in order.
func (e *dovecotEnv) releaseUser(t *testing.T) (string, [][]byte) {
	t.Helper()
	user := e.user(t)
	corpus := releaseCorpus()
	for _, msg := range corpus {
		e.d.Append(t, user, "INBOX", msg)
	}
	return user, corpus
}

// releaseNow calls Release as pop3server would and reports whether the
// client was released: exactly when nothing was outstanding.
func releaseNow(t *testing.T, m *maildrop) bool {
	t.Helper()
	if m.l.client == nil {
		return true // still released: nothing since needed the upstream
	}
	outstanding := m.body != nil || len(m.pf.batches) > 0
	before, _ := m.b.IdleReleases()
	m.Release()
	after, _ := m.b.IdleReleases()
	if m.dead != nil {
		t.Fatalf("Release retired the connection: %v", m.dead)
	}
	released := m.l.client == nil
	switch {
	case released != (after == before+1):
		t.Fatalf("released %v, counter %d -> %d", released, before, after)
	case released && outstanding:
		t.Fatal("released with a body or a window fetched ahead outstanding")
	case !released && !outstanding:
		t.Fatal("not released with nothing outstanding")
	}
	return released
}

func listedUIDLs(infos []pop3server.MessageInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.UIDL)
	}
	return out
}

// A session released before every command reads every message byte-exact
// with RETR and TOP (fetched ahead and streamed), deletes exactly what it
// marked at QUIT, and leaves the other UIDLs unchanged: over plain text,
// implicit TLS and STARTTLS.
func TestDovecotReleaseBetweenCommands(t *testing.T) {
	e := startDovecot(t)
	cfg, err := e.d.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*URL{
		{Scheme: SchemeInsecure, Host: e.d.IMAPAddr},
		{Scheme: SchemeIMAPS, Host: e.d.IMAPSAddr},
		{Scheme: SchemeIMAP, Host: e.d.IMAPAddr},
	} {
		t.Run(u.Scheme, func(t *testing.T) {
			checkGoroutines(t)
			user, corpus := e.releaseUser(t)
			stored := e.d.Messages(t, user, "INBOX")
			b := newBackend(t, u, func(o *Options) {
				o.TLSConfig = cfg
				o.Prefetch = PrefetchOptions{Budget: cache.NewBudget(1 << 20), SessionBytes: pfSession}
			})
			m := e.login(t, b, user)
			uidls := listedUIDLs(m.Messages())
			ctx := context.Background()
			released := 0
			check := func(what string, body pop3server.Body, err error, want []byte) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if got := readAll(t, body); !bytes.Equal(got, want) {
					t.Fatalf("%s: %d octets differ from the %d stored", what, len(got), len(want))
				}
			}
			for n, msg := range corpus {
				if releaseNow(t, m) {
					released++
				}
				body, err := m.Retrieve(ctx, n+1)
				check(fmt.Sprintf("RETR %d", n+1), body, err, msg)
			}
			for n, msg := range corpus {
				for _, lines := range []int{0, 2, 1 << 20} {
					if releaseNow(t, m) {
						released++
					}
					body, err := m.Top(ctx, n+1, lines)
					check(fmt.Sprintf("TOP %d %d", n+1, lines), body, err, topOf(msg, lines))
				}
			}
			// Windows fetched ahead keep some from releasing, not most.
			if released < len(corpus) {
				t.Errorf("released %d times in %d commands", released, 4*len(corpus))
			}
			releaseNow(t, m)
			if err := m.Update(ctx, pop3server.Marks{Deleted: []int{1, 3}}); err != nil {
				t.Fatalf("Update: %v", err)
			}
			m.Close()
			want := slices.Concat(storedUIDs(stored[1:2]), storedUIDs(stored[3:]))
			if got := storedUIDs(e.d.Messages(t, user, "INBOX")); !slices.Equal(got, want) {
				t.Errorf("left %v, want %v", got, want)
			}
			m2 := e.login(t, b, user)
			if got, want := listedUIDLs(m2.Messages()), slices.Concat(uidls[1:2], uidls[3:]); !slices.Equal(got, want) {
				t.Errorf("UIDLs after QUIT %q, want %q", got, want)
			}
			releaseNow(t, m2)
			m2.Close() // LOGOUT written on the released stream
			if m2.dead != nil {
				t.Errorf("LOGOUT of a released session: %v", m2.dead)
			}
		})
	}
}

// Release waits for what is outstanding: a body being read, a window
// fetched ahead and not yet read. Both are then read in full.
func TestDovecotReleaseWaitsForOutstanding(t *testing.T) {
	checkGoroutines(t)
	e := startDovecot(t)
	user, corpus := e.releaseUser(t)
	b := e.backend(t, func(o *Options) {
		o.Prefetch = PrefetchOptions{Budget: cache.NewBudget(1 << 20), SessionBytes: pfSession}
	})
	m := e.login(t, b, user)
	ctx := context.Background()

	big := len(corpus) - 6 // the 300 KiB message: streamed
	body, err := m.Retrieve(ctx, big+1)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1000)
	if _, err := body.Read(head); err != nil {
		t.Fatal(err)
	}
	if releaseNow(t, m) {
		t.Fatal("released in the middle of a body")
	}
	rest := readAll(t, body)
	if got := append(head, rest...); !bytes.Equal(got, corpus[big]) {
		t.Fatalf("body read around a Release differs")
	}

	// The last three: reading them in order leaves nothing to fetch ahead.
	small := []int{len(corpus) - 2, len(corpus) - 1, len(corpus)}
	m.Upcoming(ctx, small, nil)
	if len(m.pf.batches) == 0 {
		t.Fatal("no window fetched ahead")
	}
	if releaseNow(t, m) {
		t.Fatal("released with a window outstanding")
	}
	for _, n := range small {
		body, err := m.Retrieve(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, body); !bytes.Equal(got, corpus[n-1]) {
			t.Fatalf("RETR %d differs", n)
		}
	}
	if !releaseNow(t, m) {
		t.Fatal("not released once everything was read")
	}
}

// An upstream connection that ends while its client is released: the next
// command that needs the upstream answers -ERR [SYS/TEMP], never a body,
// and QUIT applies nothing.
func TestDovecotReleasedUpstreamGone(t *testing.T) {
	checkGoroutines(t)
	e := startDovecot(t)
	user := e.user(t)
	for i := range 3 {
		e.d.Append(t, user, "INBOX", testMessage(subject(i), 3))
	}
	relay, err := faultnet.Listen(e.d.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	b := newBackend(t, &URL{Scheme: SchemeInsecure, Host: relay.Addr()})
	m := e.login(t, b, user)
	if !releaseNow(t, m) {
		t.Fatal("not released")
	}
	relay.CutAll()
	_, err = m.Retrieve(context.Background(), 1)
	wantCode(t, err, pop3server.ErrTemporary)
	if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1, 2}}); err == nil {
		t.Error("Update on a gone upstream succeeded")
	}
	m.Close()
	if got := e.d.Messages(t, user, "INBOX"); len(got) != 3 {
		t.Errorf("%d messages left, want all 3", len(got))
	}
}

// A message another client expunges while the session is released
// answers -ERR; the others are served byte-exact.
func TestDovecotExpungedWhileReleased(t *testing.T) {
	checkGoroutines(t)
	e := startDovecot(t)
	user := e.user(t)
	var msgs [][]byte
	for i := range 3 {
		msgs = append(msgs, testMessage(subject(i), 3))
		e.d.Append(t, user, "INBOX", msgs[i])
	}
	stored := e.d.Messages(t, user, "INBOX")
	m := e.login(t, e.backend(t), user)
	if !releaseNow(t, m) {
		t.Fatal("not released")
	}
	e.d.Expunge(t, user, "INBOX", stored[1].UID)
	ctx := context.Background()
	if _, err := m.Retrieve(ctx, 2); !errors.Is(err, pop3server.ErrNoSuchMessage) {
		t.Fatalf("RETR of the expunged message: %v", err)
	}
	for _, n := range []int{1, 3} {
		releaseNow(t, m)
		body, err := m.Retrieve(ctx, n)
		if err != nil {
			t.Fatalf("RETR %d: %v", n, err)
		}
		if got := readAll(t, body); !bytes.Equal(got, msgs[n-1]) {
			t.Fatalf("RETR %d differs", n)
		}
	}
}

// Through pop3server with a tiny ReleaseAfter, the session is released
// while the client waits before each command that needs the upstream (the
// test waits for the release counter), and every answer is as without
// release.
func TestDovecotReleaseOverPOP3(t *testing.T) {
	checkGoroutines(t)
	e := startDovecot(t)
	user, corpus := e.releaseUser(t)
	stored := e.d.Messages(t, user, "INBOX")
	b := e.backend(t)
	srv := pop3server.NewServer(b, pop3server.Options{
		PlaintextAuth: pop3server.PlaintextAlways,
		Limits:        pop3server.Limits{ReleaseAfter: time.Millisecond},
		Logger:        zerolog.Nop(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })

	c := pop3client.Dial(t, ln.Addr().String(), pop3client.Options{Deadline: 2 * time.Minute})
	c.Expect("+OK*")
	c.Login(user, user+"-pw")
	waits := uint64(0)
	idle := func() {
		t.Helper()
		waits++
		waitFor(t, func() bool {
			r, _ := b.IdleReleases()
			if r > waits {
				t.Fatalf("%d releases for %d waits", r, waits)
			}
			return r == waits
		})
	}
	idle()
	// STAT and DELE need no upstream: the session stays released.
	c.CmdPrefix("STAT", fmt.Sprintf("+OK %d ", len(corpus)))
	for n, msg := range corpus {
		c.CmdPrefix(fmt.Sprintf("RETR %d", n+1), "+OK")
		if got := c.Multiline(); !bytes.Equal(got, onWire(msg)) {
			t.Fatalf("RETR %d differs", n+1)
		}
		idle()
		c.CmdPrefix(fmt.Sprintf("TOP %d 2", n+1), "+OK")
		if got := c.Multiline(); !bytes.Equal(got, onWire(topOf(msg, 2))) {
			t.Fatalf("TOP %d 2 differs", n+1)
		}
		idle()
	}
	c.CmdPrefix("DELE 2", "+OK")
	c.CmdPrefix("QUIT", "+OK")
	c.ExpectClosed()
	want := slices.Concat(storedUIDs(stored[:1]), storedUIDs(stored[2:]))
	if got := storedUIDs(e.d.Messages(t, user, "INBOX")); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if _, resumed := b.IdleReleases(); resumed != uint64(2*len(corpus))+1 {
		// Each RETR and TOP, and the QUIT's update.
		t.Errorf("%d resumes, want %d", resumed, 2*len(corpus)+1)
	}

	// A QUIT with nothing to apply logs out of a released session
	// without a client: no resume, and Dovecot sees a LOGOUT.
	dovecotSays := func(what string) int {
		n := 0
		for _, line := range strings.Split(e.d.Log(), "\n") {
			if strings.Contains(line, "imap("+user+")") && strings.Contains(line, what) {
				n++
			}
		}
		return n
	}
	before := dovecotSays("Disconnected: Logged out")
	_, resumed := b.IdleReleases()
	c = pop3client.Dial(t, ln.Addr().String(), pop3client.Options{Deadline: 2 * time.Minute})
	c.Expect("+OK*")
	c.Login(user, user+"-pw")
	idle()
	c.CmdPrefix("UIDL", "+OK")
	c.LinesToDot()
	c.CmdPrefix("QUIT", "+OK")
	c.ExpectClosed()
	waitFor(t, func() bool { return dovecotSays("Disconnected: Logged out") > before })
	if n := dovecotSays("Connection closed"); n != 0 {
		t.Errorf("%d upstream sessions closed without LOGOUT", n)
	}
	if _, now := b.IdleReleases(); now != resumed {
		t.Errorf("%d resumes for a session that needed no upstream after login", now-resumed)
	}
}

// onWire is msg as a POP3 client reads it: a last line without CRLF gets
// one before the terminating dot.
func onWire(msg []byte) []byte {
	if len(msg) > 0 && !bytes.HasSuffix(msg, []byte("\r\n")) {
		return append(slices.Clip(msg), "\r\n"...)
	}
	return msg
}
