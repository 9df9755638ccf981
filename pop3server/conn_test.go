package pop3server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

type step struct {
	send   string
	expect []string
}

func runTranscript(t *testing.T, addr string, login bool, steps []step) *pop3client.Client {
	t.Helper()
	c := dial(t, addr)
	if login {
		loginAlice(c)
	}
	for _, s := range steps {
		c.Send(s.send)
		c.Expect(s.expect...)
	}
	return c
}

// Every verb in every state, with its argument edge cases.
func TestTranscripts(t *testing.T) {
	capaAuth := []string{"+OK Capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE",
		"PIPELINING", "USER", "SASL PLAIN LOGIN", "EXPIRE NEVER", "IMPLEMENTATION popbridge", "."}
	capaTrans := []string{"+OK Capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE",
		"PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION popbridge", "."}
	sizes := []int{len(sampleMsgs[0]), len(sampleMsgs[1]), len(sampleMsgs[2])}
	total := sizes[0] + sizes[1] + sizes[2]
	itoa := strconv.Itoa

	tests := []struct {
		name  string
		login bool
		steps []step
	}{
		{"capa before login", false, []step{{"CAPA", capaAuth}}},
		{"capa lower case", false, []step{{"capa", capaAuth}}},
		{"capa after login", true, []step{{"CAPA", capaTrans}}},
		{"transaction verbs before login", false, []step{
			{"STAT", []string{"-ERR command not valid in this state"}},
			{"LIST", []string{"-ERR command not valid in this state"}},
		}},
		{"quit before login", false, []step{{"QUIT", []string{"+OK popbridge signing off"}}}},
		{"noop before login", false, []step{{"NOOP", []string{"-ERR command not valid in this state"}}}},
		{"pass without user", false, []step{{"PASS x", []string{"-ERR USER first"}}}},
		{"user without name", false, []step{{"USER", []string{"-ERR syntax error: USER name"}}}},
		{"bad password", false, []step{
			{"USER alice", []string{"+OK"}},
			{"PASS wrong", []string{"-ERR [AUTH] authentication failed"}},
		}},
		{"password with spaces is verbatim", false, []step{
			{"USER alice", []string{"+OK"}},
			{"PASS secret ", []string{"-ERR [AUTH] authentication failed"}},
		}},
		{"unknown command", false, []step{{"HELO", []string{"-ERR unknown command"}}}},
		{"apop is not offered", false, []step{{"APOP alice 0123", []string{"-ERR unsupported authentication mechanism"}}}},
		{"empty line", false, []step{{"", []string{"-ERR unknown command"}}}},
		{"stls without tls config", false, []step{{"STLS", []string{"-ERR unknown command"}}}},
		{"user after login", true, []step{{"USER bob", []string{"-ERR command not valid in this state"}}}},
		{"stat", true, []step{{"STAT", []string{"+OK 3 " + itoa(total)}}}},
		{"stat with argument", true, []step{{"STAT 1", []string{"-ERR STAT takes no argument"}}}},
		{"list all", true, []step{{"LIST", []string{"+OK 3 messages (" + itoa(total) + " octets)",
			"1 " + itoa(sizes[0]), "2 " + itoa(sizes[1]), "3 " + itoa(sizes[2]), "."}}}},
		{"list one", true, []step{{"LIST 2", []string{"+OK 2 " + itoa(sizes[1])}}}},
		{"list leading zero", true, []step{{"LIST 02", []string{"+OK 2 " + itoa(sizes[1])}}}},
		{"list zero", true, []step{{"LIST 0", []string{"-ERR no such message"}}}},
		{"list negative", true, []step{{"LIST -1", []string{"-ERR invalid message number"}}}},
		{"list plus sign", true, []step{{"LIST +1", []string{"-ERR invalid message number"}}}},
		{"list beyond", true, []step{{"LIST 4", []string{"-ERR no such message"}}}},
		{"list huge", true, []step{{"LIST 99999999999999999999999", []string{"-ERR no such message"}}}},
		{"list two args", true, []step{{"LIST 1 2", []string{"-ERR syntax error"}}}},
		{"list double space", true, []step{{"LIST  1", []string{"-ERR syntax error"}}}},
		{"uidl all", true, []step{{"UIDL", []string{"+OK 3 messages (" + itoa(total) + " octets)",
			"1 uid1", "2 uid2", "3 uid3", "."}}}},
		{"uidl one", true, []step{{"UIDL 3", []string{"+OK 3 uid3"}}}},
		{"uidl beyond", true, []step{{"UIDL 9", []string{"-ERR no such message"}}}},
		{"dele then list", true, []step{
			{"DELE 2", []string{"+OK message 2 deleted"}},
			{"DELE 2", []string{"-ERR message 2 already deleted"}},
			{"LIST 2", []string{"-ERR message 2 already deleted"}},
			{"RETR 2", []string{"-ERR message 2 already deleted"}},
			{"TOP 2 0", []string{"-ERR message 2 already deleted"}},
			{"UIDL 2", []string{"-ERR message 2 already deleted"}},
			{"STAT", []string{"+OK 2 " + itoa(sizes[0]+sizes[2])}},
			{"LIST", []string{"+OK 2 messages (" + itoa(sizes[0]+sizes[2]) + " octets)",
				"1 " + itoa(sizes[0]), "3 " + itoa(sizes[2]), "."}},
			{"UIDL", []string{"+OK*", "1 uid1", "3 uid3", "."}},
			{"RSET", []string{"+OK maildrop has 3 messages (" + itoa(total) + " octets)"}},
			{"LIST 2", []string{"+OK 2 " + itoa(sizes[1])}},
		}},
		{"dele bad", true, []step{
			{"DELE", []string{"-ERR syntax error: DELE msg"}},
			{"DELE 0", []string{"-ERR no such message"}},
			{"DELE x", []string{"-ERR invalid message number"}},
		}},
		{"retr bad", true, []step{
			{"RETR", []string{"-ERR syntax error: RETR msg"}},
			{"RETR 4", []string{"-ERR no such message"}},
			{"RETR 1 2", []string{"-ERR syntax error: RETR msg"}},
		}},
		{"top bad", true, []step{
			{"TOP 1", []string{"-ERR syntax error: TOP msg lines"}},
			{"TOP 1 -1", []string{"-ERR invalid line count"}},
			{"TOP 0 1", []string{"-ERR no such message"}},
			{"TOP 1 x", []string{"-ERR invalid line count"}},
		}},
		{"noop", true, []step{{"NOOP", []string{"+OK"}}, {"NOOP x", []string{"-ERR NOOP takes no argument"}}}},
		{"rset with argument", true, []step{{"RSET 1", []string{"-ERR RSET takes no argument"}}}},
		{"auth list", false, []step{{"AUTH", []string{"+OK", "PLAIN", "LOGIN", "."}}}},
		{"auth unknown mechanism", false, []step{{"AUTH CRAM-MD5", []string{"-ERR unsupported authentication mechanism"}}}},
		{"quit after login", true, []step{{"QUIT", []string{"+OK popbridge signing off"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startServer(t, newFake(), Options{Limits: Limits{MaxBadCommandsPreLogin: 100}})
			runTranscript(t, addr, tt.login, tt.steps)
		})
	}
}

func TestRetrAndTopBodies(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	for i, msg := range sampleMsgs[:2] {
		c.Send("RETR " + strconv.Itoa(i+1))
		c.Expect("+OK " + strconv.Itoa(len(msg)) + " octets")
		if got := c.Multiline(); !bytes.Equal(got, msg) {
			t.Errorf("RETR %d = %q, want %q", i+1, got, msg)
		}
	}
	// Message 3 has bare LFs and no final newline: CRLF'd and terminated.
	c.Send("RETR 3")
	c.Expect("+OK*")
	if got, want := string(c.Multiline()), "Subject: three\r\n\r\nbare\r\nlf\r\nno final newline\r\n"; got != want {
		t.Errorf("RETR 3 = %q, want %q", got, want)
	}
	c.Send("TOP 2 0")
	c.Expect("+OK")
	if got, want := string(c.Multiline()), "From: b@example.org\r\nSubject: two\r\n\r\n"; got != want {
		t.Errorf("TOP 2 0 = %q, want %q", got, want)
	}
	c.Send("TOP 2 2")
	c.Expect("+OK")
	if got, want := string(c.Multiline()), "From: b@example.org\r\nSubject: two\r\n\r\nline1\r\nline2\r\n"; got != want {
		t.Errorf("TOP 2 2 = %q, want %q", got, want)
	}
	c.Send("TOP 2 99999999999")
	c.Expect("+OK")
	if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[1]) {
		t.Errorf("TOP 2 huge = %q", got)
	}
	c.Send("QUIT")
	c.Expect("+OK*")
	c.ExpectClosed()
	updates, closes := b.snapshot()
	if len(updates) != 1 || closes != 1 {
		t.Fatalf("updates %v closes %d", updates, closes)
	}
	if got := updates[0]; len(got.Deleted) != 0 || !equalInts(got.Retrieved, []int{1, 2, 3}) {
		t.Errorf("marks = %+v, want retrieved 1,2,3 only (TOP never counts)", got)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The wire bytes of RETR: dot-stuffing of a line that is only a dot and of
// leading dots.
func TestRetrWireBytes(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 1")
	c.Expect("+OK*", "From: a@example.org", "Subject: one", "", "Hello", "..dot line", "..", "end", ".")
}

func TestEmptyMessage(t *testing.T) {
	b := &fakeBackend{password: "secret", msgs: [][]byte{{}}}
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 1")
	c.Expect("+OK 0 octets", ".")
	c.Send("STAT")
	c.Expect("+OK 1 0")
}

func TestEmptyMaildrop(t *testing.T) {
	b := &fakeBackend{password: "secret"}
	_, addr := startServer(t, b, Options{})
	runTranscript(t, addr, true, []step{
		{"STAT", []string{"+OK 0 0"}},
		{"LIST", []string{"+OK 0 messages (0 octets)", "."}},
		{"UIDL", []string{"+OK 0 messages (0 octets)", "."}},
		{"RETR 1", []string{"-ERR no such message"}},
		{"QUIT", []string{"+OK*"}},
	})
}

func TestPipelining(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	// One write, many commands, answered in order.
	io.WriteString(c.Conn(), "USER alice\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nUIDL 2\r\nRETR 2\r\nDELE 1\r\nNOOP\r\nQUIT\r\n")
	c.Expect("+OK", "+OK Logged in.", "+OK 3 *", "+OK 1 *", "+OK 2 uid2", "+OK "+strconv.Itoa(len(sampleMsgs[1]))+" octets")
	if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[1]) {
		t.Fatalf("pipelined RETR = %q", got)
	}
	c.Expect("+OK message 1 deleted", "+OK", "+OK popbridge signing off")
	c.ExpectClosed()
	updates, _ := b.snapshot()
	if len(updates) != 1 || !equalInts(updates[0].Deleted, []int{1}) || !equalInts(updates[0].Retrieved, []int{2}) {
		t.Fatalf("updates = %+v", updates)
	}
}

// TestPipelinedHint: a Prefetcher hears, at a RETR or TOP, which messages
// the pipelined RETR and TOP n 0 commands behind it will read, without
// numbers that would be refused and without anything being consumed.
func TestPipelinedHint(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS secret")
	c.Expect("+OK Logged in.")
	io.WriteString(c.Conn(), "RETR 3\r\nretr 1\r\nTOP 2 0\r\nNOOP\r\nTOP 2 5\r\nRETR 9\r\nRETR x\r\nQUIT\r\n")
	c.Expect("+OK " + strconv.Itoa(len(sampleMsgs[2])) + " octets")
	c.Multiline()
	c.Expect("+OK " + strconv.Itoa(len(sampleMsgs[0])) + " octets")
	c.Multiline()
	c.Expect("+OK")
	c.Multiline()
	c.Expect("+OK", "+OK")
	c.Multiline()
	c.Expect("-ERR *", "-ERR *", "+OK popbridge signing off")
	c.ExpectClosed()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.hints) == 0 {
		t.Fatal("no hint")
	}
	if h := b.hints[0]; !equalInts(h[0], []int{1}) || !equalInts(h[1], []int{2}) {
		t.Errorf("hint at RETR 3 = retr %v, headers %v; want [1], [2]", h[0], h[1])
	}
}

func TestLineTooLong(t *testing.T) {
	_, addr := startServer(t, newFake(), Options{Limits: Limits{MaxLineLength: 100}})
	c := dial(t, addr)
	c.Send("NOOP " + strings.Repeat("x", 95)) // 100 octets: allowed
	c.Expect("-ERR command not valid in this state")
	c.Send("NOOP " + strings.Repeat("x", 200))
	c.Expect("-ERR line too long")
	c.ExpectClosed()
}

func TestBadCommandBudget(t *testing.T) {
	_, addr := startServer(t, newFake(), Options{})
	c := dial(t, addr)
	c.Send("X1")
	c.Expect("-ERR unknown command")
	c.Send("X2")
	c.Expect("-ERR unknown command")
	c.Send("X3")
	c.Expect("-ERR unknown command", "-ERR too many bad commands, closing connection")
	c.ExpectClosed()
}

func TestLoginFailureLimit(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	for i := 0; i < 2; i++ {
		c.Send("USER alice")
		c.Expect("+OK")
		c.Send("PASS nope")
		c.Expect("-ERR [AUTH] authentication failed")
	}
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS nope")
	c.Expect("-ERR [AUTH] authentication failed")
	c.ExpectClosed()
}

func TestUpstreamDownIsTemporaryNotAuth(t *testing.T) {
	b := newFake()
	b.loginErr = ErrTemporary.Wrap(errors.New("dial tcp: connection refused"))
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	for i := 0; i < 5; i++ { // never counted as a login failure
		c.Send("USER alice")
		c.Expect("+OK")
		c.Send("PASS secret")
		c.Expect("-ERR [SYS/TEMP] temporary failure, try again later")
	}
}

func TestUnknownBackendErrorIsGeneric(t *testing.T) {
	b := newFake()
	b.retrieveErr = errors.New("upstream said: * BYE secret internal text")
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 1")
	c.Expect("-ERR [SYS/TEMP] temporary failure, try again later")
}

func TestControlBytesRefusedBeforeBackend(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	c.Send("USER al\x00ice")
	c.Expect("-ERR invalid user name")
	c.Send("AUTH PLAIN " + b64("\x00al\x00ice\x00secret"))
	c.Expect("-ERR [AUTH] authentication failed")
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS sec\x01ret")
	c.Expect("-ERR [AUTH] authentication failed")
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.logins) != 0 {
		t.Fatalf("backend saw logins %q", b.logins)
	}
}

// Nothing is applied without QUIT in TRANSACTION: a dropped connection, a
// timeout, RSET then drop, and a shutdown all leave Update uncalled and
// Close called once.
func TestNothingAppliedWithoutQuit(t *testing.T) {
	cases := map[string]func(t *testing.T, srv *Server, c *pop3client.Client){
		"drop": func(t *testing.T, srv *Server, c *pop3client.Client) {
			c.Conn().Close()
		},
		"rset then drop": func(t *testing.T, srv *Server, c *pop3client.Client) {
			c.Send("RSET")
			c.Expect("+OK*")
			c.Conn().Close()
		},
		"timeout": func(t *testing.T, srv *Server, c *pop3client.Client) {
			c.Expect("-ERR Disconnected for inactivity.")
			c.ExpectClosed()
		},
		"shutdown": func(t *testing.T, srv *Server, c *pop3client.Client) {
			go srv.Shutdown(context.Background())
			c.Expect("-ERR [SYS/TEMP] server shutting down, try again later")
			c.ExpectClosed()
		},
		"half-written quit": func(t *testing.T, srv *Server, c *pop3client.Client) {
			io.WriteString(c.Conn(), "QUI")
			c.Conn().Close()
		},
	}
	for name, end := range cases {
		t.Run(name, func(t *testing.T) {
			b := newFake()
			srv, addr := startServer(t, b, Options{Limits: Limits{IdleTimeout: 300 * time.Millisecond}})
			c := dial(t, addr)
			loginAlice(c)
			c.Send("DELE 1")
			c.Expect("+OK*")
			c.Send("RETR 2")
			c.Expect("+OK*")
			c.Multiline()
			end(t, srv, c)
			waitFor(t, func() bool { _, closes := b.snapshot(); return closes == 1 })
			if updates, _ := b.snapshot(); len(updates) != 0 {
				t.Fatalf("Update called: %+v", updates)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 2 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQuitUpdateFailure(t *testing.T) {
	b := newFake()
	b.updateErr = ErrUpdateFailed.Wrap(errors.New("UID EXPUNGE: NO"))
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("DELE 1")
	c.Expect("+OK*")
	c.Send("QUIT")
	c.Expect("-ERR [SYS/TEMP] some deleted messages not removed")
	c.ExpectClosed()
}

// A body that fails mid-transfer closes the connection without the dot,
// and the message is not counted as retrieved.
func TestRetrFailureMidBodyClosesWithoutDot(t *testing.T) {
	b := newFake()
	b.bodyReader = func(_ context.Context, r io.Reader) io.Reader {
		return io.MultiReader(io.LimitReader(r, 10), errReader{errors.New("upstream cut")})
	}
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 1")
	c.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, _ := io.ReadAll(c.Reader())
	if bytes.Contains(rest, []byte("\r\n.\r\n")) {
		t.Fatalf("terminating dot sent after failure: %q", rest)
	}
	waitFor(t, func() bool { _, closes := b.snapshot(); return closes == 1 })
	if updates, _ := b.snapshot(); len(updates) != 0 {
		t.Fatalf("Update called: %+v", updates)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestPreLoginTotalDeadline(t *testing.T) {
	_, addr := startServer(t, newFake(), Options{Limits: Limits{PreLoginTimeout: 300 * time.Millisecond, MaxBadCommandsPreLogin: 1000}})
	c := dial(t, addr)
	start := time.Now()
	// Keep talking: the idle timer never fires, the total one does.
	go func() {
		for i := 0; i < 50; i++ {
			if _, err := io.WriteString(c.Conn(), "CAPA\r\n"); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	c.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	all, _ := io.ReadAll(c.Reader())
	if !bytes.HasSuffix(all, []byte("-ERR Disconnected for inactivity.\r\n")) {
		t.Fatalf("last words: %q", all[max(0, len(all)-80):])
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("pre-login deadline did not fire")
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	_, addr := startServer(t, newFake(), Options{Limits: Limits{MaxConnsPerIP: 2}})
	dial(t, addr)
	dial(t, addr)
	c := dialRaw(t, addr)
	c.Expect("-ERR [SYS/TEMP] too many connections from your address")
	c.ExpectClosed()
}

func TestLockSession(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{LockSession: true})
	c1 := dial(t, addr)
	loginAlice(c1)
	c2 := dial(t, addr)
	c2.Send("USER ALICE")
	c2.Expect("+OK")
	c2.Send("PASS secret")
	c2.Expect("-ERR [IN-USE] maildrop already in use")
	c1.Conn().Close()
	waitFor(t, func() bool { _, closes := b.snapshot(); return closes == 2 })
	c3 := dial(t, addr)
	loginAlice(c3)
	// After QUIT the lock is free as soon as the answer is read: a client
	// polling again at once is not refused.
	c3.Send("QUIT")
	c3.Expect("+OK*")
	c4 := dial(t, addr)
	loginAlice(c4)
}

func TestShutdownLetsBusySessionFinish(t *testing.T) {
	b := newFake()
	release := make(chan struct{})
	b.bodyReader = func(ctx context.Context, r io.Reader) io.Reader { return &gatedReader{ctx: ctx, r: r, gate: release} }
	srv, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 2")
	time.Sleep(50 * time.Millisecond) // let RETR start
	done := make(chan error)
	go func() { done <- srv.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	c.Expect("+OK*")
	if got := c.Multiline(); !bytes.Equal(got, sampleMsgs[1]) {
		t.Fatalf("RETR during drain = %q", got)
	}
	c.Expect("-ERR [SYS/TEMP] server shutting down, try again later")
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// gatedReader holds a body back until gate closes; like a real Body it
// gives up when the Retrieve context is cancelled.
type gatedReader struct {
	ctx  context.Context
	r    io.Reader
	gate chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	select {
	case <-g.gate:
		return g.r.Read(p)
	case <-g.ctx.Done():
		return 0, g.ctx.Err()
	}
}

func TestShutdownDeadlineForcesClose(t *testing.T) {
	b := newFake()
	b.bodyReader = func(ctx context.Context, r io.Reader) io.Reader {
		return &gatedReader{ctx: ctx, r: r, gate: make(chan struct{})}
	}
	srv, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 2")
	time.Sleep(50 * time.Millisecond) // let RETR start
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// The body never arrives: at the deadline the connection is closed and
	// the Retrieve context cancelled.
	errc := make(chan error, 1)
	go func() { errc <- srv.Shutdown(ctx) }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after its deadline")
	}
}

// RSET forgets downloads as well as deletions (as Dovecot does), so
// nothing of the session is applied after it.
func TestRsetForgetsRetrieved(t *testing.T) {
	b := newFake()
	_, addr := startServer(t, b, Options{})
	c := dial(t, addr)
	loginAlice(c)
	c.Send("RETR 1")
	c.Expect("+OK*")
	c.Multiline()
	c.Send("DELE 2")
	c.Expect("+OK*")
	c.Send("RSET")
	c.Expect("+OK*")
	c.Send("RETR 3")
	c.Expect("+OK*")
	c.Multiline()
	c.Send("QUIT")
	c.Expect("+OK*")
	c.ExpectClosed()
	updates, _ := b.snapshot()
	if len(updates) != 1 || len(updates[0].Deleted) != 0 || !equalInts(updates[0].Retrieved, []int{3}) {
		t.Fatalf("updates = %+v, want only message 3 retrieved", updates)
	}
}
