package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Enrollment is an admin action on the command line (popbridge oauth
// enroll), never a side effect of a POP3 login: there is no trust on
// first use.

// DeviceFlow runs RFC 8628: it prints the verification URL and the user
// code on out, then polls the token endpoint (authorization_pending and
// slow_down are handled by x/oauth2) until the user approves, declines
// or the code expires.
func (m *Manager) DeviceFlow(ctx context.Context, p *Provider, mailbox string, out io.Writer) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, m.o.HTTPClient)
	cfg := p.config("")
	var opts []oauth2.AuthCodeOption
	if p.clientSecret != "" {
		// x/oauth2 sends only client_id to the device authorization
		// endpoint; a confidential client (Keycloak, for one) must
		// authenticate there too.
		opts = append(opts, oauth2.SetAuthURLParam("client_secret", p.clientSecret))
	}
	da, err := cfg.DeviceAuth(ctx, opts...)
	if err != nil {
		return nil, enrollError(p, "device authorization", err)
	}
	fmt.Fprintf(out, "To let popbridge read %s, sign in as %s at\n\n    %s\n\nand enter the code\n\n    %s\n\n",
		mailbox, mailbox, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s, which carries the code)\n", da.VerificationURIComplete)
	}
	if !da.Expiry.IsZero() {
		fmt.Fprintf(out, "The code expires at %s. Waiting for the approval...\n", da.Expiry.Local().Format("15:04:05"))
	} else {
		fmt.Fprintf(out, "Waiting for the approval...\n")
	}
	t, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("the code expired before it was approved; run the command again and approve sooner")
		}
		return nil, enrollError(p, "device flow", err)
	}
	return t, nil
}

// CodeFlow runs the authorization code grant with PKCE (S256) and a
// loopback redirect on 127.0.0.1: it prints the URL to open in a browser,
// waits for the redirect, and exchanges the code.
func (m *Manager) CodeFlow(ctx context.Context, p *Provider, mailbox string, out io.Writer) (*oauth2.Token, error) {
	if p.AuthURL == "" {
		return nil, fmt.Errorf("provider %q has no auth-url: set it, or use the device flow", p.Name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loopback redirect listener: %w", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", ln.Addr().(*net.TCPAddr).Port)
	cfg := p.config(redirect)
	verifier := oauth2.GenerateVerifier()
	stateBytes := make([]byte, 16)
	rand.Read(stateBytes)
	state := hex.EncodeToString(stateBytes)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.AccessTypeOffline,
		oauth2.SetAuthURLParam("login_hint", mailbox)}
	if p.Type == TypeGoogle {
		// Without prompt=consent Google returns no refresh token to an
		// app the user already approved once.
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	authURL := cfg.AuthCodeURL(state, opts...)
	fmt.Fprintf(out, "To let popbridge read %s, open this URL in a browser on this machine and sign in as %s:\n\n    %s\n\n"+
		"(The sign-in ends on %s; on a remote server, forward the port first: ssh -L %d:127.0.0.1:%d ...)\nWaiting for the sign-in...\n",
		mailbox, mailbox, authURL, redirect, ln.Addr().(*net.TCPAddr).Port, ln.Addr().(*net.TCPAddr).Port)

	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			res.err = errors.New("the redirect carried a wrong state (a stale or forged sign-in); run the command again")
		case q.Get("error") != "":
			res.err = enrollRefusal(p, q.Get("error"))
		case q.Get("code") == "":
			res.err = errors.New("the redirect carried no code")
		default:
			res.code = q.Get("code")
		}
		if res.err != nil {
			fmt.Fprintf(w, "popbridge: enrollment failed: %v\n", res.err)
		} else {
			fmt.Fprintln(w, "popbridge: signed in. You can close this page and return to the terminal.")
		}
		select {
		case got <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	// Shutdown, not Close: the handler hands the code over before its
	// page is written, and Close would cut the browser's connection
	// before the "signed in" page reaches it (the browser then shows a
	// connection error although enrollment worked).
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return nil, fmt.Errorf("no sign-in arrived: %w", context.Cause(ctx))
	}
	if res.err != nil {
		return nil, res.err
	}
	t, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, m.o.HTTPClient), res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, enrollError(p, "code exchange", err)
	}
	return t, nil
}

// SaveGrant seals t as mailbox's grant (replacing any earlier one and
// clearing a re-enrollment mark).
func (m *Manager) SaveGrant(ctx context.Context, mailbox, provider string, t *oauth2.Token) error {
	if t.RefreshToken == "" {
		return fmt.Errorf("the provider returned no refresh token, so popbridge could not renew access; " +
			"for Microsoft include the offline_access scope, for Google the app must ask for offline access")
	}
	g := Grant{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: m.expiry(t)}
	pt, err := json.Marshal(g)
	if err != nil {
		return err
	}
	sealed, err := m.o.Key.Seal(mailbox, pt)
	if err != nil {
		return err
	}
	return m.putMailbox(ctx, Mailbox{Mailbox: mailbox, Provider: provider, Mode: ModeUser, SealedGrant: sealed})
}

// AllowApp allow-lists mailbox for oauth2-app with provider.
func (m *Manager) AllowApp(ctx context.Context, mailbox, provider string) error {
	return m.putMailbox(ctx, Mailbox{Mailbox: mailbox, Provider: provider, Mode: ModeApp})
}

// putMailbox creates or replaces a row.
func (m *Manager) putMailbox(ctx context.Context, rec Mailbox) error {
	rec.UpdatedAt = m.o.Now().UTC()
	for range 5 {
		old, err := m.o.Store.GetMailbox(ctx, rec.Mailbox)
		switch {
		case errors.Is(err, ErrNotFound):
			rec.Version = 0
		case err != nil:
			return err
		default:
			rec.Version = old.Version
		}
		if _, err = m.o.Store.PutMailbox(ctx, rec); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return errors.New("the mailbox's row kept changing; try again")
}

// SetDevicePassword stores (or replaces) a device's password hash.
func (m *Manager) SetDevicePassword(ctx context.Context, mailbox, device, password string, params HashParams) error {
	if password == "" {
		return errors.New("empty device password")
	}
	h, err := HashPassword(password, params)
	if err != nil {
		return err
	}
	return m.o.Store.PutDeviceCredential(ctx, DeviceCredential{Mailbox: mailbox, Device: device, Hash: h, CreatedAt: m.o.Now().UTC()})
}

// enrollError explains a refusal of the provider during enrollment.
func enrollError(p *Provider, step string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return enrollRefusal(p, re.ErrorCode)
	}
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("%s: the identity provider answered HTTP %d; check the provider's URLs in the config file", step, re.Response.StatusCode)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: cannot reach the identity provider at %s (%v); check the provider's URLs and the network", step, ue.URL, ue.Err)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// enrollRefusal is the terminal text for an OAuth error code.
func enrollRefusal(p *Provider, code string) error {
	var hint string
	switch code {
	case "access_denied", "authorization_declined":
		hint = "the sign-in was declined; ask the mailbox owner (or an admin) to approve it and run the command again"
	case "expired_token":
		hint = "the code expired before it was approved; run the command again and approve sooner"
	case "invalid_client":
		hint = "the client id or secret is wrong: check client-id and client-secret-file of provider " + p.Name
	case "unauthorized_client":
		hint = "the app registration does not allow this flow: for the device flow on Microsoft, set \"Allow public client flows\" to Yes; or use --flow code"
	case "invalid_scope":
		if p.Type == TypeGoogle {
			hint = "Google refuses Gmail scopes in the device flow: use --flow code"
		} else {
			hint = "the provider refused the scopes: check scopes of provider " + p.Name + " and the API permissions of the app"
		}
	case "invalid_grant":
		hint = "the provider refused the grant (a used or expired code, or a clock far off); run the command again"
	case "consent_required", "interaction_required":
		hint = "an administrator must grant consent for the app first (see docs/oauth2.md)"
	default:
		hint = "the identity provider refused: " + code
	}
	return fmt.Errorf("%s (%s)", hint, strings.TrimSpace(code))
}
