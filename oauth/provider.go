package oauth

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"golang.org/x/oauth2"
)

// Provider types (the type: key of a provider in the config file).
const (
	TypeM365    = "m365"
	TypeGoogle  = "google"
	TypeGeneric = "generic"
)

// Provider is one identity provider named in the config file's providers:
// section. For m365 and google the endpoints and scopes are known and only
// the client id (and secret, tenant) are needed; generic needs them all.
type Provider struct {
	Name             string
	Type             string
	ClientID         string
	ClientSecretFile string // read by Load; the secret itself is never logged
	Tenant           string // m365: directory (tenant) id or domain; default "organizations"
	DeviceAuthURL    string // RFC 8628 endpoint; empty: no device flow
	AuthURL          string // authorization endpoint (code + PKCE)
	TokenURL         string
	Scopes           []string // delegated scopes (oauth2-user)
	AppScopes        []string // client credentials scopes (oauth2-app)
	// ServiceAccountFile (google, oauth2-app) is a service account's JSON
	// key with domain-wide delegation: each mailbox gets a token of its
	// own, for the service account acting as the mailbox's user.
	ServiceAccountFile string

	clientSecret   string
	serviceAccount *serviceAccount
}

// Known scopes (docs/oauth2.md).
var (
	m365UserScopes   = []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}
	m365AppScopes    = []string{"https://outlook.office365.com/.default"}
	googleUserScopes = []string{"https://mail.google.com/"}
)

// Load fills in the known endpoints and scopes of the provider's type,
// reads the client secret file and checks what is left. Errors name the
// config key to fix.
func (p *Provider) Load() error {
	switch p.Type {
	case TypeM365:
		t := p.Tenant
		if t == "" {
			t = "organizations"
		}
		base := "https://login.microsoftonline.com/" + url.PathEscape(t) + "/oauth2/v2.0/"
		setDefault(&p.DeviceAuthURL, base+"devicecode")
		setDefault(&p.AuthURL, base+"authorize")
		setDefault(&p.TokenURL, base+"token")
		if len(p.Scopes) == 0 {
			p.Scopes = m365UserScopes
		}
		if len(p.AppScopes) == 0 {
			p.AppScopes = m365AppScopes
		}
	case TypeGoogle:
		// No device flow: Google's device endpoint refuses Gmail scopes
		// (invalid_scope), so enrollment is code + PKCE.
		setDefault(&p.AuthURL, "https://accounts.google.com/o/oauth2/v2/auth")
		setDefault(&p.TokenURL, "https://oauth2.googleapis.com/token")
		if len(p.Scopes) == 0 {
			p.Scopes = googleUserScopes
		}
		if len(p.AppScopes) == 0 {
			p.AppScopes = googleUserScopes
		}
	case TypeGeneric:
		if p.TokenURL == "" {
			return fmt.Errorf("provider %q: token-url is required for type generic", p.Name)
		}
		if p.DeviceAuthURL == "" && p.AuthURL == "" {
			return fmt.Errorf("provider %q: give device-auth-url or auth-url (or both) for type generic", p.Name)
		}
	case "":
		return fmt.Errorf("provider %q: type is required (m365, google or generic)", p.Name)
	default:
		return fmt.Errorf("provider %q: unknown type %q (want m365, google or generic)", p.Name, p.Type)
	}
	if p.ServiceAccountFile != "" {
		if p.Type != TypeGoogle {
			return fmt.Errorf("provider %q: service-account-file is for type google only", p.Name)
		}
		sa, err := loadServiceAccount(p.ServiceAccountFile)
		if err != nil {
			return fmt.Errorf("provider %q: service-account-file: %w", p.Name, err)
		}
		p.serviceAccount = sa
	}
	if p.ClientID == "" && p.serviceAccount == nil {
		return fmt.Errorf("provider %q: client-id is required", p.Name)
	}
	for _, u := range []struct{ key, v string }{{"device-auth-url", p.DeviceAuthURL}, {"auth-url", p.AuthURL}, {"token-url", p.TokenURL}} {
		if u.v == "" {
			continue
		}
		pu, err := url.Parse(u.v)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return fmt.Errorf("provider %q: %s: want an http(s) URL", p.Name, u.key)
		}
	}
	if p.ClientSecretFile != "" {
		b, err := os.ReadFile(p.ClientSecretFile)
		if err != nil {
			return fmt.Errorf("provider %q: client-secret-file: %w", p.Name, err)
		}
		p.clientSecret = strings.TrimSpace(string(b))
		if p.clientSecret == "" {
			return fmt.Errorf("provider %q: client-secret-file %s is empty", p.Name, p.ClientSecretFile)
		}
	}
	return nil
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

// authStyle sends the client id (and secret) in the form body, as
// Microsoft's documentation does and every provider accepts. It is fixed
// rather than auto-detected: auto-detection retries a refused request the
// other way, which would send a refresh token twice (and trip reuse
// detection).
const authStyle = oauth2.AuthStyleInParams

// HasDeviceFlow reports whether enrollment can use RFC 8628.
func (p *Provider) HasDeviceFlow() bool { return p.DeviceAuthURL != "" }

// config is the x/oauth2 configuration for delegated grants.
func (p *Provider) config(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.clientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       p.AuthURL,
			DeviceAuthURL: p.DeviceAuthURL,
			TokenURL:      p.TokenURL,
			AuthStyle:     authStyle,
		},
		RedirectURL: redirectURL,
		Scopes:      p.Scopes,
	}
}
