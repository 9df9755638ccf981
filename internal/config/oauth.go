package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/popbridge/popbridge/policy"
)

// Auth modes (the auth key, server-wide and per domain or user).
const (
	AuthPassthrough = "passthrough"
	AuthOAuth2User  = "oauth2-user"
	AuthOAuth2App   = "oauth2-app"
)

// Provider is one entry of the file's providers: section, as written;
// package oauth fills in the known endpoints of m365 and google and
// reads the secret file.
type Provider struct {
	Type             string   // m365, google or generic
	ClientID         string   // client-id
	ClientSecretFile string   // client-secret-file: a path, never the secret inline
	Tenant           string   // tenant (m365)
	DeviceAuthURL    string   // device-auth-url
	AuthURL          string   // auth-url
	TokenURL         string   // token-url
	Scopes           []string // scopes (oauth2-user)
	AppScopes        []string // app-scopes (oauth2-app)
	// ServiceAccountFile (service-account-file, google, oauth2-app) is a
	// service account's JSON key with domain-wide delegation.
	ServiceAccountFile string
}

func checkAuth(v string) error {
	switch v {
	case AuthPassthrough, AuthOAuth2User, AuthOAuth2App:
		return nil
	}
	return fmt.Errorf("unknown auth %q (want passthrough, oauth2-user or oauth2-app)", v)
}

// UsesOAuth reports whether any user can resolve to an OAuth2 mode.
func (c *Config) UsesOAuth() bool {
	r := c.Resolver()
	if isOAuth(r.Default.Auth) {
		return true
	}
	for _, o := range c.Domains {
		if o.Auth != nil && isOAuth(*o.Auth) {
			return true
		}
	}
	for _, o := range c.Users {
		if o.Auth != nil && isOAuth(*o.Auth) {
			return true
		}
	}
	return false
}

// defaultAuth is the resolver's server-wide auth: "" for passthrough,
// which policy.Settings' zero value means.
func defaultAuth(a string) string {
	if a == AuthPassthrough {
		return ""
	}
	return a
}

func isOAuth(a string) bool { return a == AuthOAuth2User || a == AuthOAuth2App }

// checkOAuth checks that every OAuth2 mode, as it resolves for the server,
// each domain and each user, names a provider of the providers: section,
// and that a secret key file is given when any does.
func (c *Config) checkOAuth() error {
	err := c.eachResolved("auth", func(s policy.Settings, where string) error {
		if !isOAuth(s.Auth) {
			return nil
		}
		if s.Provider == "" {
			return fmt.Errorf("%s: auth %s needs a provider (provider: NAME, one of the file's providers:)", where, s.Auth)
		}
		if _, ok := c.Providers[s.Provider]; !ok {
			return fmt.Errorf("%s: provider %q is not in the config file's providers:", where, s.Provider)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.UsesOAuth() && c.SecretKeyFile == "" {
		return fmt.Errorf("--secret-key-file: required when an auth is oauth2-user or oauth2-app (create one with: popbridge oauth keygen --secret-key-file FILE)")
	}
	return nil
}

// parseProviders reads the providers: section.
func parseProviders(c *Config, path string, m *yaml.Node) error {
	if isNull(m) {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		return fileError(path, m, "providers", "want a mapping of provider names to settings, got %s", kindName(m))
	}
	out := map[string]Provider{}
	err := eachPair(path, m, "providers.", func(name string, kn, vn *yaml.Node) error {
		at := fmt.Sprintf("providers.%q", name)
		if err := checkOverrideName("providers", name); err != nil {
			return fileError(path, kn, at, "%v", err)
		}
		if vn.Kind != yaml.MappingNode {
			return fileError(path, vn, at, "want a mapping of settings, got %s", kindName(vn))
		}
		var p Provider
		err := eachPair(path, vn, at+".", func(k string, kn, vn *yaml.Node) error {
			key := at + "." + k
			if k == "scopes" || k == "app-scopes" {
				v, err := scalarOrList(path, vn, key, true)
				if err != nil {
					return err
				}
				l := splitList(v)
				if k == "scopes" {
					p.Scopes = l
				} else {
					p.AppScopes = l
				}
				return nil
			}
			if vn.Kind != yaml.ScalarNode || isNull(vn) {
				return fileError(path, vn, key, "want a single value, got %s", kindName(vn))
			}
			field := map[string]*string{
				"type": &p.Type, "client-id": &p.ClientID, "client-secret-file": &p.ClientSecretFile,
				"tenant": &p.Tenant, "device-auth-url": &p.DeviceAuthURL, "auth-url": &p.AuthURL, "token-url": &p.TokenURL,
				"service-account-file": &p.ServiceAccountFile,
			}[k]
			if field == nil {
				if k == "client-secret" {
					return fileError(path, kn, key, "secrets are never inline: put it in a file of mode 0600 and give client-secret-file")
				}
				return fileError(path, kn, key, "unknown key (a provider sets type, client-id, client-secret-file, tenant, device-auth-url, auth-url, token-url, scopes, app-scopes or service-account-file)")
			}
			*field = vn.Value
			return nil
		})
		if err != nil {
			return err
		}
		switch p.Type {
		case "m365", "google", "generic":
		case "":
			return fileError(path, kn, at, "type is required (m365, google or generic)")
		default:
			return fileError(path, kn, at+".type", "unknown type %q (want m365, google or generic)", p.Type)
		}
		if p.ClientID == "" && p.ServiceAccountFile == "" {
			return fileError(path, kn, at, "client-id is required (or, for type google in oauth2-app, service-account-file)")
		}
		if p.ServiceAccountFile != "" && p.Type != "google" {
			return fileError(path, kn, at+".service-account-file", "for type google only (domain-wide delegation)")
		}
		if p.Type == "generic" && p.TokenURL == "" {
			return fileError(path, kn, at, "token-url is required for type generic")
		}
		out[name] = p
		c.where["providers."+name] = fmt.Sprintf("config %s:%d: %s", path, kn.Line, at)
		return nil
	})
	if err != nil {
		return err
	}
	c.Providers = out
	return nil
}
