package pop3server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// fakeBackend is an in-memory Backend recording what sessions did.
type fakeBackend struct {
	mu       sync.Mutex
	password string
	msgs     [][]byte
	loginErr error // returned by Login when set
	updates  []Marks
	closes   int
	logins   []string
	// passwords[i] is the password of logins[i], to prove credentials
	// reach the backend unchanged.
	passwords []string
	// retrieveErr, when set, is returned by Retrieve.
	retrieveErr error
	// bodyReader, when set, wraps each body (to inject failures).
	bodyReader func(context.Context, io.Reader) io.Reader
	updateErr  error
	// hints records Prefetcher.Upcoming calls: retr, then headers.
	hints [][2][]int
	// releases counts Releaser.Release calls.
	releases int
}

func (b *fakeBackend) Login(ctx context.Context, conn ConnInfo, user, pass string) (Mailbox, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logins = append(b.logins, user)
	b.passwords = append(b.passwords, pass)
	if b.loginErr != nil {
		return nil, b.loginErr
	}
	if pass != b.password {
		return nil, ErrAuthFailed.Wrap(errors.New("NO [AUTHENTICATIONFAILED] upstream said so"))
	}
	return &fakeMailbox{b: b}, nil
}

func (b *fakeBackend) snapshot() (updates []Marks, closes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Marks(nil), b.updates...), b.closes
}

type fakeMailbox struct {
	b      *fakeBackend
	closed bool
}

func (m *fakeMailbox) Messages() []MessageInfo {
	var out []MessageInfo
	for i, msg := range m.b.msgs {
		out = append(out, MessageInfo{Size: int64(len(msg)), UIDL: fmt.Sprintf("uid%d", i+1)})
	}
	return out
}

type fakeBody struct {
	io.Reader
	closed bool
}

func (b *fakeBody) Close() error { b.closed = true; return nil }

func (m *fakeMailbox) Retrieve(ctx context.Context, n int) (Body, error) {
	if m.b.retrieveErr != nil {
		return nil, m.b.retrieveErr
	}
	var r io.Reader = bytes.NewReader(m.b.msgs[n-1])
	if m.b.bodyReader != nil {
		r = m.b.bodyReader(ctx, r)
	}
	return &fakeBody{Reader: r}, nil
}

func (m *fakeMailbox) Top(ctx context.Context, n int, lines int) (Body, error) {
	msg := m.b.msgs[n-1]
	hdrEnd := bytes.Index(msg, []byte("\r\n\r\n"))
	if hdrEnd < 0 {
		return &fakeBody{Reader: bytes.NewReader(msg)}, nil
	}
	out := msg[:hdrEnd+4]
	rest := msg[hdrEnd+4:]
	for i := 0; i < lines && len(rest) > 0; i++ {
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			j = len(rest) - 1
		}
		out = msg[:len(out)+j+1]
		rest = rest[j+1:]
	}
	return &fakeBody{Reader: bytes.NewReader(out)}, nil
}

// Upcoming records the hint (Prefetcher).
func (m *fakeMailbox) Upcoming(_ context.Context, retr, headers []int) {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.hints = append(m.b.hints, [2][]int{retr, headers})
}

// Release counts the call (Releaser).
func (m *fakeMailbox) Release() {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.releases++
}

func (b *fakeBackend) released() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.releases
}

func (m *fakeMailbox) Update(ctx context.Context, marks Marks) error {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.b.updates = append(m.b.updates, marks)
	return m.b.updateErr
}

func (m *fakeMailbox) Close() error {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if m.closed {
		panic("mailbox closed twice")
	}
	m.closed = true
	m.b.closes++
	return nil
}

var sampleMsgs = [][]byte{
	[]byte("From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\n.\r\nend\r\n"),
	[]byte("From: b@example.org\r\nSubject: two\r\n\r\nline1\r\nline2\r\nline3\r\n"),
	[]byte("Subject: three\r\n\r\nbare\nlf\nno final newline"),
}

// startServer runs a Server with the fake backend on a loopback port.
func startServer(t *testing.T, b *fakeBackend, opts Options) (*Server, string) {
	t.Helper()
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = time.Millisecond
	}
	srv := NewServer(b, opts)
	return srv, serveOn(t, srv, nil)
}

// serveOn serves srv on a new loopback listener, wrapped by wrap when not
// nil, and returns the address to dial.
func serveOn(t *testing.T, srv *Server, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return addr
}

// clientOptions: a 10 s deadline for a whole connection; ExpectClosed
// waits 5 s and takes no reset for a close.
var clientOptions = pop3client.Options{Deadline: 10 * time.Second, CloseTimeout: 5 * time.Second}

func dial(t *testing.T, addr string) *pop3client.Client {
	t.Helper()
	c := dialRaw(t, addr)
	c.Expect("+OK popbridge ready.")
	return c
}

// dialRaw connects without reading the greeting.
func dialRaw(t *testing.T, addr string) *pop3client.Client {
	t.Helper()
	return pop3client.Dial(t, addr, clientOptions)
}

// loginAlice logs in as alice with the exact answers of the fake backend.
func loginAlice(c *pop3client.Client) {
	c.TB().Helper()
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS secret")
	c.Expect("+OK Logged in.")
}

func newFake() *fakeBackend {
	return &fakeBackend{password: "secret", msgs: sampleMsgs}
}

// recorder is an Observer keeping every event, for tests.
type recorder struct {
	mu       sync.Mutex
	logins   []loginEvent
	sessions []SessionStats
}

type loginEvent struct {
	conn ConnInfo
	user string
	err  error
}

func (r *recorder) ConnectionOpened(ConnInfo) {}
func (r *recorder) LoginAttempted(c ConnInfo, user string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logins = append(r.logins, loginEvent{c, user, err})
}
func (r *recorder) CommandDone(string, bool) {}
func (r *recorder) SessionClosed(_ ConnInfo, s SessionStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = append(r.sessions, s)
}

func (r *recorder) ended() []SessionStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SessionStats(nil), r.sessions...)
}
