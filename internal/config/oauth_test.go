package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestOAuthKeys(t *testing.T) {
	file := writeFile(t, `upstream: imaps://imap.example.net
secret-key-file: /etc/popbridge/secret.key
providers:
  corp:
    type: generic
    client-id: popbridge
    device-auth-url: https://idp.test/devicecode
    token-url: https://idp.test/token
    scopes: [mail, offline]
  m365: {type: m365, client-id: abc, tenant: contoso.onmicrosoft.com}
domains:
  example.com: {auth: oauth2-user, provider: corp}
users:
  app@example.com: {auth: oauth2-app, provider: m365}
  legacy@example.com: {auth: passthrough}
`)
	c := mustLoad(t, []string{"--config", file}, nil)
	want := map[string]Provider{
		"corp": {Type: "generic", ClientID: "popbridge", DeviceAuthURL: "https://idp.test/devicecode", TokenURL: "https://idp.test/token", Scopes: []string{"mail", "offline"}},
		"m365": {Type: "m365", ClientID: "abc", Tenant: "contoso.onmicrosoft.com"},
	}
	if !reflect.DeepEqual(c.Providers, want) {
		t.Errorf("providers = %+v", c.Providers)
	}
	r := c.Resolver()
	for user, w := range map[string][2]string{
		"bob@example.com":    {AuthOAuth2User, "corp"},
		"app@example.com":    {AuthOAuth2App, "m365"},
		"legacy@example.com": {AuthPassthrough, "corp"},
		"x@elsewhere.test":   {"", ""},
	} {
		if s := r.Resolve(user); s.Auth != w[0] || s.Provider != w[1] {
			t.Errorf("Resolve(%s) = auth %q provider %q, want %q %q", user, s.Auth, s.Provider, w[0], w[1])
		}
	}
	if !c.UsesOAuth() {
		t.Error("UsesOAuth() = false")
	}
}

func TestOAuthErrors(t *testing.T) {
	const base = "upstream: imaps://imap.example.net\nsecret-key-file: k\n"
	for _, tc := range []struct{ file, want string }{
		{"providers:\n  p: {type: generic, client-id: x, client-secret: s3cret, token-url: https://t}\n", `client-secret: secrets are never inline`},
		{"providers:\n  p: {type: azure, client-id: x}\n", `unknown type "azure"`},
		{"providers:\n  p: {type: generic, client-id: x}\n", `token-url is required`},
		{"providers:\n  p: {type: m365}\n", `client-id is required`},
		{"providers:\n  p: {type: m365, client-id: x, colour: red}\n", `unknown key`},
		{"domains:\n  example.com: {auth: oauth2-user}\n", `auth oauth2-user needs a provider`},
		{"domains:\n  example.com: {auth: oauth2-user, provider: nope}\n", `provider "nope" is not in the config file's providers:`},
		{"users:\n  a@b.c: {auth: oauth3}\n", `unknown auth "oauth3"`},
	} {
		_, err := Load([]string{"--config", writeFile(t, base+tc.file)}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", tc.file, err, tc.want)
		}
	}
	// An oauth2 mode needs the secret key file.
	f := writeFile(t, "upstream: imaps://imap.example.net\nauth: oauth2-user\nprovider: p\nproviders:\n  p: {type: m365, client-id: x}\n")
	if _, err := Load([]string{"--config", f}, nil); err == nil || !strings.Contains(err.Error(), "--secret-key-file: required") {
		t.Errorf("no secret key file: %v", err)
	}
	// The admin tool needs no upstream.
	f = writeFile(t, "secret-key-file: k\nauth: oauth2-user\nprovider: p\nproviders:\n  p: {type: m365, client-id: x}\n")
	if _, err := LoadTool([]string{"--config", f}, nil); err != nil {
		t.Errorf("LoadTool without upstream: %v", err)
	}
}
