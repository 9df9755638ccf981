// Package oauthserver is a test-only OAuth 2.0 authorization server on
// loopback that can fail every way a real one does: the device
// authorization grant (RFC 8628) with scripted authorization_pending,
// slow_down, access_denied and expired_token answers; authorization code
// with PKCE (S256); refresh tokens with rotation and reuse detection;
// client credentials; the JWT bearer grant of a service account acting as
// a user (Google's domain-wide delegation); invalid_grant on revoked grants; 5xx answers and
// dropped connections; token introspection (RFC 7662) for Dovecot's
// oauth2 passdb; and a fake clock for token expiry.
//
// Tokens are opaque random strings; the server keeps all state in memory.
package oauthserver

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configures Start. Zero values mean the defaults.
type Options struct {
	// ClientID is the one client the server knows (default "popbridge").
	ClientID string
	// ClientSecret, when set, must be given (HTTP Basic or form).
	ClientSecret string
	// AccessTTL is the access tokens' lifetime (default one hour).
	AccessTTL time.Duration
	// GrantAccessTTL, when set, is the lifetime of the access tokens the
	// device and code grants issue (the ones enrollment stores); refreshed
	// ones live AccessTTL. A short one makes the first logins after
	// enrollment refresh, with no clock to move (other processes).
	GrantAccessTTL time.Duration
	// NoRotation keeps refresh tokens across refreshes; by default each
	// refresh returns a new one and reusing an old one revokes the grant.
	NoRotation bool
	// Interval is the device flow's polling interval in seconds (default 1).
	Interval int
	// AppDomain is the tenant's domain in client-credentials tokens'
	// introspection (default "example.test").
	AppDomain string
}

// Server is a running authorization server.
type Server struct {
	// URL is the base: URL+"/token", "/devicecode", "/authorize",
	// "/introspect" (also "/introspect?user=U&token=T" by GET).
	URL string

	opts Options
	hs   *httptest.Server

	mu            sync.Mutex
	now           time.Time
	tokenDown     int // 0 up; >0 answer that status; -1 drop the connection
	introDown     bool
	requests      map[string]int // grant type -> token requests
	introspects   int
	devices       map[string]*device // device code -> state
	userCodes     map[string]string  // user code -> device code
	nextDevice    []string           // script for the next device authorization
	nextDeviceFor string             // user that approves it at the end of the script
	codes         map[string]*authCode
	authorizeUser string
	denyAuthorize bool
	grants        map[string]*grant  // refresh token (current or old) -> grant
	access        map[string]*access // access token -> its grant
	appRefused    bool
	jwtKey        *rsa.PublicKey // service account key trusted for the JWT bearer grant
}

type device struct {
	userCode string
	expiry   time.Time
	script   []string // errors to answer, in turn, before the outcome
	user     string   // approved for this user; "" while pending
	denied   bool
	done     bool
}

type authCode struct {
	user, challenge, redirect string
}

type grant struct {
	user      string
	current   string // the refresh token valid now
	revoked   bool
	reuseSeen bool
}

type access struct {
	g      *grant // nil for client credentials
	expiry time.Time
}

// Start starts a server on 127.0.0.1 and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = "popbridge"
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = time.Hour
	}
	if opts.AppDomain == "" {
		opts.AppDomain = "example.test"
	}
	if opts.Interval <= 0 {
		opts.Interval = 1
	}
	s := &Server{
		opts: opts, now: time.Now().Truncate(time.Second),
		requests: map[string]int{}, devices: map[string]*device{}, userCodes: map[string]string{},
		codes: map[string]*authCode{}, grants: map[string]*grant{}, access: map[string]*access{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /devicecode", s.deviceCode)
	mux.HandleFunc("GET /authorize", s.authorize)
	mux.HandleFunc("/introspect", s.introspect)
	s.hs = httptest.NewServer(mux)
	s.URL = s.hs.URL
	t.Cleanup(s.hs.Close)
	return s
}

// Now is the server's clock.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// Advance moves the server's clock forward.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	s.now = s.now.Add(d)
	s.mu.Unlock()
}

// SetTokenDown makes /token (and /devicecode) fail: status > 0 answers
// that HTTP status with {"error":"temporarily_unavailable"}, -1 drops the
// connection without an answer, 0 restores service.
func (s *Server) SetTokenDown(status int) {
	s.mu.Lock()
	s.tokenDown = status
	s.mu.Unlock()
}

// SetIntrospectionDown makes /introspect drop every connection.
func (s *Server) SetIntrospectionDown(down bool) {
	s.mu.Lock()
	s.introDown = down
	s.mu.Unlock()
}

// TokenRequests counts /token requests with that grant_type ("" for all):
// "refresh_token", "authorization_code", "client_credentials",
// "urn:ietf:params:oauth:grant-type:device_code".
func (s *Server) TokenRequests(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if grantType != "" {
		return s.requests[grantType]
	}
	n := 0
	for _, v := range s.requests {
		n += v
	}
	return n
}

// Introspections counts /introspect requests.
func (s *Server) Introspections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.introspects
}

// NextDeviceFlow scripts the next device authorization: each polling
// request answers the next error of script ("authorization_pending",
// "slow_down", "access_denied", "expired_token"), and once the script is
// exhausted the device is approved for user (when user is not empty;
// else it stays pending until Approve or Deny).
func (s *Server) NextDeviceFlow(user string, script ...string) {
	s.mu.Lock()
	s.nextDevice = script
	s.nextDeviceFor = user
	s.mu.Unlock()
}

// Approve approves the device authorization with userCode for user.
func (s *Server) Approve(userCode, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[s.userCodes[userCode]]
	if d == nil {
		return fmt.Errorf("no device authorization with user code %q", userCode)
	}
	d.user = user
	return nil
}

// AuthorizeAs makes /authorize approve for user (deny: refuse with
// access_denied).
func (s *Server) AuthorizeAs(user string, deny bool) {
	s.mu.Lock()
	s.authorizeUser, s.denyAuthorize = user, deny
	s.mu.Unlock()
}

// TrustServiceAccount makes the JWT bearer grant accept assertions
// signed with key.
func (s *Server) TrustServiceAccount(key *rsa.PublicKey) {
	s.mu.Lock()
	s.jwtKey = key
	s.mu.Unlock()
}

// checkAssertionLocked verifies an RS256 assertion and returns its sub.
func (s *Server) checkAssertionLocked(assertion string) (string, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 || s.jwtKey == nil {
		return "", fmt.Errorf("bad assertion")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.jwtKey, crypto.SHA256, sum[:], sig); err != nil {
		return "", err
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Sub == "" || c.Aud != s.URL+"/token" {
		return "", fmt.Errorf("bad claims")
	}
	return c.Sub, nil
}

// RefuseApp makes client-credentials tokens introspect as inactive, as
// Microsoft 365 refuses an app without IMAP.AccessAsApp or without
// Add-MailboxPermission, and refuses the JWT bearer grant with
// unauthorized_client, as Google does without domain-wide delegation.
func (s *Server) RefuseApp(refuse bool) {
	s.mu.Lock()
	s.appRefused = refuse
	s.mu.Unlock()
}

// Revoke revokes every grant of user: refreshes answer invalid_grant and
// its access tokens introspect as inactive.
func (s *Server) Revoke(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if g.user == user {
			g.revoked = true
		}
	}
}

// ReuseDetected reports whether a rotated refresh token was used again.
func (s *Server) ReuseDetected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.grants {
		if g.reuseSeen {
			return true
		}
	}
	return false
}

func (s *Server) issueLocked(g *grant, ttl time.Duration) (string, string) {
	at := "at-" + random()
	s.access[at] = &access{g: g, expiry: s.now.Add(ttl)}
	if g.current == "" || !s.opts.NoRotation {
		g.current = "rt-" + random()
		s.grants[g.current] = g
	}
	return at, g.current
}

func random() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// down answers per SetTokenDown; it reports whether it did.
func (s *Server) down(w http.ResponseWriter, status int) bool {
	switch {
	case status > 0:
		oauthError(w, status, "temporarily_unavailable")
		return true
	case status < 0:
		drop(w)
		return true
	}
	return false
}

// drop closes the connection without an answer, as a crashed server.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			return
		}
	}
	http.Error(w, "down", http.StatusBadGateway)
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "test server: " + code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// clientOK checks client authentication (Basic or form).
func (s *Server) clientOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == s.opts.ClientID && secret == s.opts.ClientSecret
}

func (s *Server) deviceCode(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down(w, s.tokenDown) {
		return
	}
	if !s.clientOK(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	dc, uc := "dc-"+random(), strings.ToUpper(random()[:8])
	d := &device{userCode: uc, expiry: s.now.Add(10 * time.Minute), script: s.nextDevice, user: s.nextDeviceFor}
	if len(d.script) == 0 && d.user == "" {
		d.script = nil
	}
	s.nextDevice, s.nextDeviceFor = nil, ""
	s.devices[dc] = d
	s.userCodes[uc] = dc
	writeJSON(w, map[string]any{
		"device_code": dc, "user_code": uc, "verification_uri": s.URL + "/device",
		"expires_in": 600, "interval": s.opts.Interval,
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	gt := r.PostForm.Get("grant_type")
	s.requests[gt]++
	if s.down(w, s.tokenDown) {
		return
	}
	// The JWT bearer grant authenticates with its signed assertion.
	if gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" && !s.clientOK(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	switch gt {
	case "refresh_token":
		g := s.grants[r.PostForm.Get("refresh_token")]
		switch {
		case g == nil || g.revoked:
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		case g.current != r.PostForm.Get("refresh_token"):
			// A rotated refresh token used again: someone else has a
			// copy. Revoke the whole grant, as real servers do.
			g.revoked, g.reuseSeen = true, true
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		s.answerTokens(w, g)
	case "urn:ietf:params:oauth:grant-type:device_code":
		d := s.devices[r.PostForm.Get("device_code")]
		switch {
		case d == nil || d.done:
			oauthError(w, http.StatusBadRequest, "invalid_grant")
		case !s.now.Before(d.expiry):
			oauthError(w, http.StatusBadRequest, "expired_token")
		case len(d.script) > 0:
			e := d.script[0]
			d.script = d.script[1:]
			oauthError(w, http.StatusBadRequest, e)
		case d.denied:
			oauthError(w, http.StatusBadRequest, "access_denied")
		case d.user == "":
			oauthError(w, http.StatusBadRequest, "authorization_pending")
		default:
			d.done = true
			s.answerTokens(w, &grant{user: d.user})
		}
	case "authorization_code":
		c := s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code"))
		if c == nil || c.redirect != r.PostForm.Get("redirect_uri") {
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			oauthError(w, http.StatusBadRequest, "invalid_grant")
			return
		}
		s.answerTokens(w, &grant{user: c.user})
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		// A service account's signed assertion (RFC 7523), as Google's
		// domain-wide delegation: the token acts as the assertion's sub.
		sub, err := s.checkAssertionLocked(r.PostForm.Get("assertion"))
		switch {
		case err != nil:
			oauthError(w, http.StatusBadRequest, "invalid_grant")
		case s.appRefused:
			oauthError(w, http.StatusUnauthorized, "unauthorized_client")
		default:
			at := "at-" + random()
			s.access[at] = &access{g: &grant{user: sub}, expiry: s.now.Add(s.opts.AccessTTL)}
			writeJSON(w, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.opts.AccessTTL / time.Second)})
		}
	case "client_credentials":
		at := "at-" + random()
		s.access[at] = &access{expiry: s.now.Add(s.opts.AccessTTL)}
		writeJSON(w, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.opts.AccessTTL / time.Second)})
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

// answerTokens issues tokens for g: for a new grant (device or code)
// living GrantAccessTTL if set, for a refresh AccessTTL.
func (s *Server) answerTokens(w http.ResponseWriter, g *grant) {
	ttl := s.opts.AccessTTL
	if g.current == "" && s.opts.GrantAccessTTL > 0 {
		ttl = s.opts.GrantAccessTTL
	}
	at, rt := s.issueLocked(g, ttl)
	writeJSON(w, map[string]any{
		"access_token": at, "token_type": "Bearer", "refresh_token": rt,
		"expires_in": int(ttl / time.Second),
	})
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != s.opts.ClientID || q.Get("response_type") != "code" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	v := url.Values{"state": {q.Get("state")}}
	switch {
	case s.denyAuthorize || s.authorizeUser == "":
		v.Set("error", "access_denied")
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		v.Set("error", "invalid_request")
	default:
		code := "code-" + random()
		s.codes[code] = &authCode{user: s.authorizeUser, challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		v.Set("code", code)
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// introspect answers RFC 7662 for Dovecot: {"active":true,"email":USER}
// for a live delegated token, and "email":"app@"+AppDomain for a live
// client-credentials token unless RefuseApp (see DovecotOAuth2.TenantWide).
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.introspects++
	if s.introDown {
		drop(w)
		return
	}
	a := s.access[r.Form.Get("token")]
	res := map[string]any{"active": false}
	switch {
	case a == nil || !s.now.Before(a.expiry):
	case a.g != nil && !a.g.revoked:
		res = map[string]any{"active": true, "email": a.g.user, "sub": a.g.user, "exp": a.expiry.Unix()}
	case a.g == nil && !s.appRefused:
		res = map[string]any{"active": true, "client_id": s.opts.ClientID, "email": "app@" + s.opts.AppDomain, "exp": a.expiry.Unix()}
	}
	writeJSON(w, res)
}

// ReplayRefresh sends a refresh request with refreshToken as a third
// party would (a stolen copy); the answer is ignored.
func (s *Server) ReplayRefresh(t testing.TB, refreshToken string) {
	t.Helper()
	resp, err := http.PostForm(s.URL+"/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {refreshToken},
		"client_id": {s.opts.ClientID}, "client_secret": {s.opts.ClientSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
