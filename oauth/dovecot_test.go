package oauth

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/oauthserver"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/upstream"
)

// cheap keeps Argon2id fast in tests; the format and code path are the
// production ones.
var cheap = HashParams{MemoryKiB: 64, Time: 1, Threads: 1}

const alice = "alice@example.test"

// env is one bridge in front of a Dovecot whose oauth2 passdb asks a test
// authorization server.
type env struct {
	idp    *oauthserver.Server
	dc     *testenv.Dovecot
	st     Store
	m      *Manager
	addr   string // POP3
	logBuf *bridgeproc.SyncBuffer
	reg    *prometheus.Registry
	be     *upstream.Backend
}

type envOptions struct {
	mech     string // "xoauth2" or "oauthbearer": the only one Dovecot offers; "" both
	mode     string // ModeUser (default) or ModeApp
	idp      oauthserver.Options
	appIntro bool // Dovecot takes a token for any mailbox of the domain (app mode)
	// upstream, when set, changes the backend's options (a store, say).
	upstream func(*upstream.Options)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	idp := oauthserver.Start(t, o.idp)
	dopts := testenv.DovecotOptions{
		Users:  []testenv.User{{Name: alice, Password: "seed"}, {Name: "bob@example.test", Password: "seed"}},
		OAuth2: &testenv.DovecotOAuth2{IntrospectionURL: idp.URL + "/introspect"},
	}
	if o.appIntro {
		dopts.OAuth2.TenantWide = true
	}
	if o.mech != "" {
		dopts.ExtraConfig = "auth_mechanisms = plain login " + o.mech
	}
	dc := testenv.StartDovecot(t, dopts)
	mode := o.mode
	if mode == "" {
		mode = ModeUser
	}
	return newBridge(t, dc, idp, mode, o.upstream)
}

// memoryStore is the real state store, in memory (SQLite).
func memoryStore(t *testing.T) Store {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite::memory:", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return FromStore(s)
}

// newBridge starts a bridge (a Manager with an in-memory store and provider
// "corp", the upstream backend, a POP3 server) in front of dc; idp, when
// not nil, is provider corp and the bridge's clock.
func newBridge(t *testing.T, dc *testenv.Dovecot, idp *oauthserver.Server, mode string, mods ...func(*upstream.Options)) *env {
	t.Helper()
	key, err := NewServerKey()
	if err != nil {
		t.Fatal(err)
	}
	return newReplica(t, dc, idp, mode, memoryStore(t), key, mods...)
}

// newReplica is newBridge on a given store and key: several replicas
// share them.
func newReplica(t *testing.T, dc *testenv.Dovecot, idp *oauthserver.Server, mode string, st Store, key *ServerKey, mods ...func(*upstream.Options)) *env {
	t.Helper()
	e := &env{idp: idp, dc: dc, st: st, logBuf: &bridgeproc.SyncBuffer{}}
	base, now := "http://127.0.0.1:9", time.Now // nothing listens on the discard port
	if idp != nil {
		base, now = idp.URL, idp.Now
	}
	p := &Provider{Name: "corp", Type: TypeGeneric, ClientID: "popbridge",
		DeviceAuthURL: base + "/devicecode", AuthURL: base + "/authorize", TokenURL: base + "/token",
		Scopes: []string{"mail"}, AppScopes: []string{"mail.app"}}
	if err := p.Load(); err != nil {
		t.Fatal(err)
	}
	e.reg = prometheus.NewRegistry()
	e.m = NewManager(ManagerOptions{Store: e.st, Key: key, Providers: map[string]*Provider{"corp": p},
		Now: now, Logger: zerolog.New(e.logBuf), Metrics: NewMetrics(e.reg, e.st)})
	res := &policy.Resolver{Default: policy.Settings{Mailbox: "INBOX", Policy: policy.Default, Auth: mode, Provider: "corp"}}
	u, err := upstream.ParseURL("imap+insecure://" + dc.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	uo := upstream.Options{URL: u, Resolver: res, Policy: policy.Default,
		Authenticator: NewAuthenticator(e.m, NewVerifier(VerifierOptions{}), res), Logger: zerolog.New(e.logBuf)}
	for _, mod := range mods {
		if mod != nil {
			mod(&uo)
		}
	}
	b, err := upstream.New(uo)
	if err != nil {
		t.Fatal(err)
	}
	e.be = b
	srv := pop3server.NewServer(b, pop3server.Options{PlaintextAuth: pop3server.PlaintextAlways,
		Limits: pop3server.Limits{
			MaxConnsPerIP:    -1,
			AuthFailDelay:    -1,
			MaxLoginFailures: 100,
		},
		Logger: zerolog.New(e.logBuf)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.addr = ln.Addr().String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", e.logBuf.String())
		}
	})
	return e
}

// enroll enrolls mailbox by the device flow (pending once) and gives it
// the devices' passwords.
func (e *env) enroll(t *testing.T, mailbox string, devices map[string]string) {
	t.Helper()
	ctx := context.Background()
	e.idp.NextDeviceFlow(mailbox, "authorization_pending")
	var out bytes.Buffer
	tok, err := e.m.DeviceFlow(ctx, e.m.Provider("corp"), mailbox, &out)
	if err != nil {
		t.Fatalf("device flow: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), e.idp.URL+"/device") {
		t.Fatalf("the terminal text has no verification URL:\n%s", out.String())
	}
	if err := e.m.SaveGrant(ctx, mailbox, "corp", tok); err != nil {
		t.Fatal(err)
	}
	for d, pw := range devices {
		if err := e.m.SetDevicePassword(ctx, mailbox, d, pw, cheap); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) dial(t *testing.T) *pop3client.Client {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := pop3client.New(t, conn, pop3client.Options{Deadline: 2 * time.Minute})
	c.MustLine("+OK")
	return c
}

// login returns the answer to PASS.
func (e *env) login(t *testing.T, user, pass string) (*pop3client.Client, string) {
	t.Helper()
	c := e.dial(t)
	r, err := c.TryLogin(user, pass)
	if err != nil && !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("login: %q %v", r, err)
	}
	return c, r
}

func message(i int) []byte {
	return []byte(fmt.Sprintf("From: a@example.test\r\nTo: %s\r\nSubject: message %d\r\n\r\nbody %d\r\n.dot-stuffed line\r\n", alice, i, i))
}

func TestUserModeRetrieves(t *testing.T) {
	for _, mech := range []string{"oauthbearer", "xoauth2", ""} {
		t.Run("mech="+mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech})
			want := message(1)
			e.dc.Append(t, alice, "INBOX", want)
			e.enroll(t, alice, map[string]string{"scanner": "scan-pw", "pbx": "pbx-pw"})
			for _, pw := range []string{"scan-pw", "pbx-pw", "scan-pw"} {
				c, r := e.login(t, alice, pw)
				if !strings.HasPrefix(r, "+OK") {
					t.Fatalf("login with device password %q: %s", pw, r)
				}
				st, body, err := c.TryMulti("RETR 1")
				if err != nil || !bytes.Equal(body, want) {
					t.Fatalf("RETR 1: %s %v\n%q\nwant\n%q", st, err, body, want)
				}
				c.OK("QUIT")
			}
			wantMech := map[string]string{"oauthbearer": "OAUTHBEARER", "xoauth2": "XOAUTH2", "": "OAUTHBEARER"}[mech]
			if got := strings.Count(e.dc.Log(), "method="+wantMech); got != 3 {
				t.Errorf("Dovecot logged %d logins with method=%s, want 3", got, wantMech)
			}
			if n := e.idp.TokenRequests("refresh_token"); n != 0 {
				t.Errorf("%d refreshes for a valid access token, want 0", n)
			}
		})
	}
}
