package oauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// browser is the terminal the admin reads: when CodeFlow prints its URL,
// it "opens" it, following the authorization server's redirect to the
// loopback listener, as a browser would.
type browser struct {
	mu   sync.Mutex
	out  bytes.Buffer
	once sync.Once
	t    *testing.T
	page chan string
}

var authURLRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+/authorize\?\S+`)

func (b *browser) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out.Write(p)
	if u := authURLRE.FindString(b.out.String()); u != "" {
		b.once.Do(func() {
			go func() {
				resp, err := http.Get(u)
				if err != nil {
					b.page <- "error: " + err.Error()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				b.page <- string(body)
			}()
		})
	}
	return len(p), nil
}

func TestCodeFlowPKCE(t *testing.T) {
	e := newEnv(t, envOptions{mech: "xoauth2"})
	want := message(7)
	e.dc.Append(t, alice, "INBOX", want)
	e.idp.AuthorizeAs(alice, false)
	p := e.m.Provider("corp")
	b := &browser{t: t, page: make(chan string, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := e.m.CodeFlow(ctx, p, alice, b)
	if err != nil {
		t.Fatalf("code flow: %v\n%s", err, b.out.String())
	}
	if page := <-b.page; !strings.Contains(page, "signed in") {
		t.Errorf("the browser showed %q", page)
	}
	if !strings.Contains(b.out.String(), "code_challenge_method=S256") {
		t.Errorf("no PKCE in the authorization URL:\n%s", b.out.String())
	}
	if err := e.m.SaveGrant(ctx, alice, "corp", tok); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetDevicePassword(ctx, alice, "pbx", "pbx-pw", cheap); err != nil {
		t.Fatal(err)
	}
	c, r := e.login(t, alice, "pbx-pw")
	if !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login after code flow: %q", r)
	}
	if _, body, _ := c.TryMulti("RETR 1"); !bytes.Equal(body, want) {
		t.Errorf("RETR 1: %q", body)
	}
	c.OK("QUIT")

	// The user declines.
	e.idp.AuthorizeAs(alice, true)
	b = &browser{t: t, page: make(chan string, 1)}
	if _, err := e.m.CodeFlow(ctx, p, alice, b); err == nil || !strings.Contains(err.Error(), "declined") {
		t.Errorf("declined sign-in: %v", err)
	}
}

func TestDeviceFlowRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := e.m.Provider("corp")
	ctx := context.Background()
	// slow_down costs 5 more seconds per poll (RFC 8628 3.5, done by
	// x/oauth2): one case only.
	e.idp.NextDeviceFlow(alice, "authorization_pending", "slow_down", "authorization_pending")
	var out bytes.Buffer
	if tok, err := e.m.DeviceFlow(ctx, p, alice, &out); err != nil || tok.RefreshToken == "" {
		t.Errorf("pending, slow_down, pending, approve: %v", err)
	}
	if n := e.idp.TokenRequests("urn:ietf:params:oauth:grant-type:device_code"); n != 4 {
		t.Errorf("%d polls, want 4", n)
	}
	for script, want := range map[string]string{
		"access_denied": "the sign-in was declined",
		"expired_token": "the code expired before it was approved",
	} {
		e.idp.NextDeviceFlow("", script)
		if _, err := e.m.DeviceFlow(ctx, p, alice, &out); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q on one line", script, err, want)
		}
	}
	e.idp.SetTokenDown(503)
	if _, err := e.m.DeviceFlow(ctx, p, alice, &out); err == nil || !strings.Contains(err.Error(), "temporarily_unavailable") {
		t.Errorf("IdP down: %v", err)
	}
	e.idp.SetTokenDown(0)
	wrong := *p
	wrong.ClientID = "someone-else"
	if _, err := e.m.DeviceFlow(ctx, &wrong, alice, &out); err == nil || !strings.Contains(err.Error(), "client id or secret is wrong") {
		t.Errorf("wrong client: %v", err)
	}
	if err := e.m.SaveGrant(ctx, alice, "corp", &oauth2.Token{AccessToken: "a"}); err == nil || !strings.Contains(err.Error(), "no refresh token") {
		t.Errorf("grant without a refresh token: %v", err)
	}
}

// jwtHS256 signs claims as Dovecot's local validation expects.
func jwtHS256(t *testing.T, key []byte, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

// TestLocalJWT runs the bridge against a Dovecot that validates tokens
// itself (introspection_mode = local): no HTTP at all between them.
func TestLocalJWT(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			key := []byte("0123456789abcdef0123456789abcdef")
			dc := testenv.StartDovecot(t, testenv.DovecotOptions{
				Users:       []testenv.User{{Name: alice, Password: "seed"}},
				OAuth2:      &testenv.DovecotOAuth2{JWTKey: key, JWTIssuer: "https://idp.test"},
				ExtraConfig: "auth_mechanisms = plain login " + mech,
			})
			want := message(9)
			dc.Append(t, alice, "INBOX", want)
			e := newBridge(t, dc, nil, ModeUser)
			now := time.Now()
			tok := jwtHS256(t, key, map[string]any{"sub": alice, "email": alice, "iss": "https://idp.test",
				"iat": now.Unix(), "nbf": now.Unix() - 60, "exp": now.Add(time.Hour).Unix()})
			ctx := context.Background()
			if err := e.m.SaveGrant(ctx, alice, "corp", &oauth2.Token{AccessToken: tok, RefreshToken: "unused", Expiry: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if err := e.m.SetDevicePassword(ctx, alice, "scanner", "pw", cheap); err != nil {
				t.Fatal(err)
			}
			c, r := e.login(t, alice, "pw")
			if !strings.HasPrefix(r, "+OK") {
				t.Fatalf("login: %q", r)
			}
			if _, body, _ := c.TryMulti("RETR 1"); !bytes.Equal(body, want) {
				t.Errorf("RETR 1: %q", body)
			}
			c.OK("QUIT")
			if !strings.Contains(dc.Log(), "method="+strings.ToUpper(mech)) {
				t.Errorf("Dovecot logged no %s login", mech)
			}
		})
	}
}
