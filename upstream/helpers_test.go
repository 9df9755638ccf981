package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

const (
	testUser = "alice"
	testPass = "secret"
)

var (
	capsFull = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	// capsRev1 drops UIDPLUS and MOVE, for the fallbacks.
	capsRev1 = imap.CapSet{imap.CapIMAP4rev1: {}}
)

// memServer is an imapmemserver on a loopback port, without TLS.
type memServer struct {
	addr string
	user *imapmemserver.User
}

func startMem(t *testing.T, caps imap.CapSet) *memServer {
	return startMemOpts(t, memOptions{caps: caps, insecureAuth: true})
}

type memOptions struct {
	caps         imap.CapSet
	tls          *tls.Config // offered with STARTTLS, or implicit
	implicitTLS  bool
	insecureAuth bool // allow LOGIN without TLS
}

func startMemOpts(t *testing.T, o memOptions) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(testUser, testPass)
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         o.caps,
		InsecureAuth: o.insecureAuth,
		Logger:       log.New(io.Discard, "", 0),
	}
	if !o.implicitTLS {
		opts.TLSConfig = o.tls
	}
	srv := imapserver.New(opts)
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.implicitTLS {
		ln = tls.NewListener(ln, o.tls)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &memServer{addr: ln.Addr().String(), user: user}
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

func (s *memServer) append(t *testing.T, mailbox string, msg []byte, flags ...imap.Flag) imap.UID {
	t.Helper()
	data, err := s.user.Append(mailbox, literal{bytes.NewReader(msg)}, &imap.AppendOptions{Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	return data.UID
}

func (s *memServer) url() *URL { return &URL{Scheme: SchemeInsecure, Host: s.addr} }

// stored is a message as an independent IMAP client sees it.
type stored struct {
	UID   imap.UID
	Flags []imap.Flag
	Body  []byte
}

func (s stored) has(flag imap.Flag) bool {
	for _, f := range s.Flags {
		if strings.EqualFold(string(f), string(flag)) {
			return true
		}
	}
	return false
}

// inspect lists mailbox with a separate connection (EXAMINE: no side
// effects).
func inspect(t *testing.T, addr, mailbox string) []stored {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	bs := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1}}, &imap.FetchOptions{
		UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{bs},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for _, m := range msgs {
		out = append(out, stored{UID: m.UID, Flags: m.Flags, Body: m.FindBodySection(bs)})
	}
	_ = c.Logout().Wait()
	return out
}

func uidsOf(l []stored) []imap.UID {
	var out []imap.UID
	for _, s := range l {
		out = append(out, s.UID)
	}
	return out
}

func newBackend(t *testing.T, u *URL, mod ...func(*Options)) *Backend {
	t.Helper()
	opts := Options{URL: u, Policy: policy.Default, CommandTimeout: 5 * time.Second}
	for _, f := range mod {
		f(&opts)
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testConn = pop3server.ConnInfo{
	SessionID:  "test",
	RemoteAddr: netip.MustParseAddrPort("192.0.2.7:40000"),
	LocalAddr:  netip.MustParseAddrPort("127.0.0.1:1110"),
}

func login(t *testing.T, b *Backend) *maildrop {
	t.Helper()
	mb, err := b.Login(context.Background(), testConn, testUser, testPass)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb.(*maildrop)
}

// testMessage is a CRLF message with a header and lines body lines.
func testMessage(subject string, lines int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: a@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n\r\n", subject)
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&b, "line %d of %s\r\n", i, subject)
	}
	return b.Bytes()
}

func readAll(t *testing.T, body pop3server.Body) []byte {
	t.Helper()
	got, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if err := body.Close(); err != nil {
		t.Fatalf("closing body: %v", err)
	}
	return got
}

func wantCode(t *testing.T, err error, want *pop3server.Error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %q", err, want.Text)
	}
}

// checkGoroutines fails if goroutines of the client side (go-imap's
// imapclient or this package) outlive the test. Server goroutines are
// imapserver's business: on a write error it can leave one parked.
func checkGoroutines(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		var leaked []string
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
			leaked = clientGoroutines()
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, g := range leaked {
			t.Errorf("leaked goroutine:\n%s", g)
		}
	})
}

func clientGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// Test goroutines (testing.tRunner) are not ours to count.
		if strings.Contains(g, "testing.tRunner") {
			continue
		}
		if strings.Contains(g, "go-imap/v2/imapclient") || strings.Contains(g, "popbridge/upstream.") {
			out = append(out, g)
		}
	}
	return out
}

func errorsAs(err error, target **pop3server.Error) bool { return errors.As(err, target) }

// waitFor polls cond until it holds; a condition that never does fails
// the test only after two minutes, so a busy machine cannot.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met after 2 minutes")
		}
	}
}
