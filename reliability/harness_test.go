package reliability

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	popbridge "github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// The deadlines every fault test runs with: short, so a fault that makes
// popbridge wait shows up in a fraction of a second.
const (
	dialTimeout    = 500 * time.Millisecond
	loginTimeout   = time.Second
	commandTimeout = 500 * time.Millisecond
	writeTimeout   = 500 * time.Millisecond
	// deadlineSlack is what an answer may come after the deadline that
	// produced it. A 2-core CI machine running the suite under -race
	// beside other work schedules a fired deadline's goroutine seconds
	// late (400 ms was overshot), so the tests show that each deadline
	// fires, not how punctually: without it the session would wait for
	// the test client's opTimeout (60 s) or forever.
	deadlineSlack = 5 * time.Second
	// slack bounds waits that are not a deadline: sessions winding down,
	// a healthy session under load.
	slack = 10 * time.Second
	// logoutBound is upstream's fixed LOGOUT timeout (maildrop.Close),
	// which a session end may take against a hung upstream.
	logoutBound = 5 * time.Second
)

// bridgeOptions shape one in-process popbridge.
type bridgeOptions struct {
	upstream string // server-wide upstream URL
	// users are per-user overrides (another upstream, say).
	users   map[string]policy.Override
	policy  *policy.Policy // default policy.Default
	breaker upstream.BreakerOptions
	// config adjusts the configuration last.
	config func(*config.Config)
	// noLogs drops popbridge's log instead of keeping it for a failure;
	// warnLogs keeps warnings and errors only.
	noLogs, warnLogs bool
	// dial, login and command replace the short test deadlines.
	dial, login, command time.Duration
}

// bridge is popbridge assembled in-process by package bridge.
type bridge struct {
	t    testing.TB
	b    *popbridge.Bridge
	addr string
	logs *bridgeproc.SyncBuffer
}

func startBridge(t testing.TB, o bridgeOptions) *bridge {
	t.Helper()
	logs := &bridgeproc.SyncBuffer{}
	log := zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	switch {
	case o.noLogs:
		log = zerolog.Nop()
	case o.warnLogs:
		log = log.Level(zerolog.WarnLevel)
	}
	cfg := config.Default()
	if o.upstream != "" {
		u, err := upstream.ParseURL(o.upstream)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Upstream = u
	}
	cfg.Users = o.users
	if o.policy != nil {
		cfg.DeletePolicy, cfg.DeleteAction, cfg.MarkSeen = o.policy.Delete, o.policy.Action, o.policy.MarkSeen
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.PlaintextAuth = pop3server.PlaintextAlways
	cfg.UpstreamDialTimeout = or(o.dial, dialTimeout)
	cfg.UpstreamLoginTimeout = or(o.login, loginTimeout)
	cfg.UpstreamCommandTimeout = or(o.command, commandTimeout)
	cfg.IdleTimeout = 30 * time.Second
	cfg.WriteTimeout = writeTimeout
	cfg.PreLoginTimeout = 30 * time.Second
	cfg.AuthFailDelay = -1  // disabled: refused logins answer at once
	cfg.MaxConnsPerIP = -1  // disabled: every client is 127.0.0.1
	cfg.MaxUserIPConns = -1 // the same
	if o.config != nil {
		o.config(cfg)
	}
	pb, err := popbridge.New(cfg, popbridge.Options{Logger: log, Breaker: o.breaker})
	if err != nil {
		t.Fatal(err)
	}
	b := &bridge{t: t, b: pb, addr: pb.Addrs().POP3, logs: logs}
	served := pb.Start()
	t.Cleanup(func() {
		pb.Close()
		<-served
		if t.Failed() {
			t.Logf("popbridge log:\n%s", logs.Tail(60))
		}
	})
	return b
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// waitSessions waits until the bridge has no session left.
func (b *bridge) waitSessions(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for b.b.ActiveSessions() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// fake starts a imapscript server with user alice (password "secret") and
// bob ("pw"), each with msgs messages in INBOX.
func startFake(t testing.TB, opts imapscript.Options, msgs int) *imapscript.Server {
	t.Helper()
	s, err := imapscript.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, u := range []struct{ name, pass string }{{"alice", "secret"}, {"bob", "pw"}} {
		s.AddUser(u.name, u.pass)
		for i := 1; i <= msgs; i++ {
			s.Append(u.name, "INBOX", testMessage(u.name, i, 20))
		}
	}
	return s
}

// testMessage is message i of user, with lines body lines (CRLF), and a
// line starting with a dot to exercise dot-stuffing.
func testMessage(user string, i, lines int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender@example.com\r\nTo: %s@example.com\r\nSubject: message %d for %s\r\nMessage-ID: <%d.%s@test>\r\n\r\n", user, i, user, i, user)
	for l := 1; l <= lines; l++ {
		if l == 2 {
			b.WriteString(".a line with a leading dot\r\n")
			continue
		}
		fmt.Fprintf(&b, "line %d of message %d for %s\r\n", l, i, user)
	}
	return b.Bytes()
}

// bigMessage is a message of about size octets.
func bigMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: big@example.com\r\nSubject: big\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%08d %s\r\n", i, strings.Repeat("x", 64))
	}
	return b.Bytes()
}

// mailboxUnchanged fails the test if user's INBOX differs from before.
func mailboxUnchanged(t testing.TB, s *imapscript.Server, user string, before []imapscript.Message) {
	t.Helper()
	after := s.Messages(user, "INBOX")
	if !reflect.DeepEqual(summarize(before), summarize(after)) {
		t.Errorf("mailbox of %s changed:\nbefore %v\nafter  %v", user, summarize(before), summarize(after))
	}
}

// othersUnchanged fails unless every message of before, except the UIDs
// in except, is in after exactly as it was, and after has nothing new.
func othersUnchanged(t testing.TB, before, after []imapscript.Message, except ...uint32) {
	t.Helper()
	drop := func(msgs []imapscript.Message) []imapscript.Message {
		var out []imapscript.Message
		for _, m := range msgs {
			if !slices.Contains(except, m.UID) {
				out = append(out, m)
			}
		}
		return out
	}
	if b, a := summarize(drop(before)), summarize(drop(after)); !reflect.DeepEqual(b, a) {
		t.Errorf("messages outside the session's set changed:\nbefore %v\nafter  %v", b, a)
	}
}

// summarize describes messages by UID, flags and a body digest.
func summarize(msgs []imapscript.Message) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%d%v/%d", m.UID, m.Flags, len(m.Body)))
	}
	return out
}

// noUnscopedExpunge fails if popbridge sent EXPUNGE (or CLOSE) to a
// server that has UIDPLUS.
func noUnscopedExpunge(t testing.TB, s *imapscript.Server) {
	t.Helper()
	if cs := s.CommandsNamed("EXPUNGE", "CLOSE"); len(cs) > 0 {
		t.Errorf("popbridge sent an unscoped %v", cs)
	}
}

// quiet checks, once the test's sessions are over, that the bridge and
// the fake upstream are back to where they started: no POP3 session, no
// upstream connection, and no goroutine that was not there at the start
// (the servers keep running: the faulty session must clean up itself).
type quiet struct {
	t        testing.TB
	baseline goleak.Option
}

func startQuiet(t testing.TB) *quiet {
	return &quiet{t: t, baseline: goleak.IgnoreCurrent()}
}

// check waits up to timeout for the bridge and fake to go idle and the
// goroutines to return to the baseline.
func (q *quiet) check(b *bridge, fake interface{ WaitIdle(time.Duration) bool }, timeout time.Duration) {
	q.t.Helper()
	deadline := time.Now().Add(timeout)
	if b != nil && !b.waitSessions(time.Until(deadline)) {
		q.t.Errorf("%d POP3 sessions still open after %v", b.b.ActiveSessions(), timeout)
	}
	if fake != nil && !fake.WaitIdle(time.Until(deadline)) {
		q.t.Errorf("upstream connections still open after %v", timeout)
	}
	var err error
	for {
		// A relay brought Up again has a new accept loop.
		if err = goleak.Find(q.baseline, goleak.IgnoreAnyFunction("github.com/popbridge/popbridge/internal/testing/faultnet.(*Relay).acceptLoop")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	q.t.Errorf("goroutines did not return to the baseline: %v", err)
}

// heapAfterGC is the live heap, measured after two collections.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// within runs f and fails the test if it took longer than bound.
func within(t testing.TB, bound time.Duration, what string, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	f()
	el := time.Since(start)
	if el > bound {
		t.Errorf("%s took %v, want at most %v", what, el.Round(time.Millisecond), bound)
	}
	return el
}
