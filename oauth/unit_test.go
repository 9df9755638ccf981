package oauth

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/store"
)

func TestSeal(t *testing.T) {
	k1, _ := NewServerKey()
	k2, _ := NewServerKey()
	pt := []byte(`{"access_token":"a","refresh_token":"r"}`)
	s, err := k1.Seal("alice@example.test", pt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s, []byte("refresh_token")) {
		t.Fatal("sealed grant holds the plaintext")
	}
	if got, err := k1.Open("alice@example.test", s); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	s2, _ := k1.Seal("alice@example.test", pt)
	if bytes.Equal(s, s2) {
		t.Error("two seals of the same grant are equal (no fresh key and nonce)")
	}
	for name, open := range map[string]func() ([]byte, error){
		"other key":     func() ([]byte, error) { return k2.Open("alice@example.test", s) },
		"other mailbox": func() ([]byte, error) { return k1.Open("bob@example.test", s) },
		"truncated":     func() ([]byte, error) { return k1.Open("alice@example.test", s[:len(s)-1]) },
		"empty":         func() ([]byte, error) { return k1.Open("alice@example.test", nil) },
		"flipped": func() ([]byte, error) {
			c := bytes.Clone(s)
			c[len(c)-5] ^= 1
			return k1.Open("alice@example.test", c)
		},
	} {
		if _, err := open(); !errors.Is(err, ErrUnseal) {
			t.Errorf("%s: %v, want ErrUnseal", name, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := GenerateKeyFile(path); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second keygen: %v", err)
	}
	k, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := k.Seal("m", []byte("x"))
	k2, _ := LoadKeyFile(path)
	if _, err := k2.Open("m", s); err != nil {
		t.Errorf("a reloaded key does not open: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadKeyFile(path); !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), "0600") {
		t.Errorf("mode 0644: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600)
	if _, err := LoadKeyFile(bad); !errors.Is(err, ErrBadKeyFile) {
		t.Errorf("a PEM file: %v", err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, ErrBadKeyFile) {
		t.Errorf("missing: %v", err)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("pässword", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("PHC string %q", h)
	}
	for pw, want := range map[string]bool{"pässword": true, "password": false, "": false} {
		if ok, err := checkHash(h, pw); ok != want || err != nil {
			t.Errorf("check %q = %v %v", pw, ok, err)
		}
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA", "$argon2id$v=18$m=64,t=1,p=1$c2FsdA$aGFzaA",
		"$argon2id$v=19$m=64,t=0,p=1$c2FsdA$aGFzaA", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdA$aGFzaA", "$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaA"} {
		if _, err := checkHash(bad, "x"); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if h2, _ := HashPassword("x", DefaultHashParams); !strings.Contains(h2, "$m=19456,t=2,p=1$") {
		t.Errorf("default parameters: %q", h2)
	}
	g, _ := GeneratePassword()
	if len(g) != 24 || strings.Count(g, "-") != 4 {
		t.Errorf("generated %q", g)
	}
}

func TestVerifierCacheAndBound(t *testing.T) {
	h1, _ := HashPassword("one", cheap)
	h2, _ := HashPassword("two", cheap)
	creds := []DeviceCredential{{Mailbox: "m", Device: "a", Hash: h1}, {Mailbox: "m", Device: "b", Hash: h2}, {Mailbox: "m", Device: "c", Hash: "garbage"}}
	v := NewVerifier(VerifierOptions{MaxConcurrent: 1})
	ctx := context.Background()
	if d, err := v.Check(ctx, "m", "two", creds); d != "b" || err != nil {
		t.Fatalf("Check two = %q %v", d, err)
	}
	// Cached: with every hashing slot taken, the device that just logged
	// in is still recognised at once, and nobody else is.
	v.sem <- struct{}{}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if d, err := v.Check(short, "m", "two", creds); d != "b" || err != nil {
		t.Errorf("cached Check = %q %v", d, err)
	}
	if _, err := v.Check(short, "m", "one", creds); err == nil || errors.Is(err, errNoDevice) {
		t.Errorf("uncached check beyond the bound: %v, want a temporary error", err)
	}
	cancel()
	<-v.sem
	h2b, _ := HashPassword("two", cheap) // the device's password was set again
	if d, err := v.Check(ctx, "m", "two", []DeviceCredential{creds[0], {Mailbox: "m", Device: "b", Hash: h2b}}); d != "b" || err != nil {
		t.Errorf("after a re-set = %q %v", d, err)
	}
	if _, err := v.Check(ctx, "m", "two", creds[:1]); !errors.Is(err, errNoDevice) {
		t.Errorf("revoked device still accepted from the cache: %v", err)
	}
	if _, err := v.Check(ctx, "other", "one", creds[:1]); err != nil {
		t.Errorf("same credentials under another mailbox key: %v", err)
	}
}

func TestProviderLoad(t *testing.T) {
	p := &Provider{Name: "m", Type: TypeM365, ClientID: "id", Tenant: "contoso.onmicrosoft.com"}
	if err := p.Load(); err != nil {
		t.Fatal(err)
	}
	if p.DeviceAuthURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode" ||
		p.TokenURL != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" ||
		strings.Join(p.Scopes, " ") != "https://outlook.office.com/IMAP.AccessAsUser.All offline_access" ||
		strings.Join(p.AppScopes, " ") != "https://outlook.office365.com/.default" {
		t.Errorf("m365: %+v", p)
	}
	g := &Provider{Name: "g", Type: TypeGoogle, ClientID: "id"}
	if err := g.Load(); err != nil || g.HasDeviceFlow() || g.Scopes[0] != "https://mail.google.com/" {
		t.Errorf("google: %+v %v", g, err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "s")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		p    Provider
		want string
	}{
		{Provider{Type: TypeGeneric, ClientID: "x"}, "token-url is required"},
		{Provider{Type: TypeGeneric, ClientID: "x", TokenURL: "https://t"}, "device-auth-url or auth-url"},
		{Provider{Type: TypeGeneric, ClientID: "x", TokenURL: "ftp://t", AuthURL: "https://a"}, "want an http(s) URL"},
		{Provider{Type: "azure", ClientID: "x"}, "unknown type"},
		{Provider{Type: TypeM365}, "client-id is required"},
		{Provider{Type: TypeM365, ClientID: "x", ClientSecretFile: filepath.Join(dir, "none")}, "client-secret-file"},
		{Provider{Type: TypeM365, ClientID: "x", ServiceAccountFile: secret}, "for type google only"},
		{Provider{Type: TypeGoogle, ServiceAccountFile: secret}, "not a service account key"},
	} {
		if err := tc.p.Load(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
	s := &Provider{Type: TypeM365, ClientID: "x", ClientSecretFile: secret}
	if err := s.Load(); err != nil || s.clientSecret != "s3cret" {
		t.Errorf("secret file: %v", err)
	}
}

func TestStoreAdapter(t *testing.T) {
	st := memoryStore(t)
	ctx := context.Background()
	if _, err := st.GetMailbox(ctx, "m@x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing mailbox: %v", err)
	}
	m, err := st.PutMailbox(ctx, Mailbox{Mailbox: "m@x", Provider: "p", Mode: ModeApp})
	if err != nil {
		t.Fatal(err)
	}
	m.NeedsReenroll, m.LastError = true, "upstream refused fresh tokens twice (401)"
	if _, err := st.PutMailbox(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutMailbox(ctx, m); !errors.Is(err, ErrConflict) {
		t.Errorf("stale version: %v", err)
	}
	got, err := st.GetMailbox(ctx, "m@x")
	if err != nil || got.Mode != ModeApp || !got.NeedsReenroll || got.LastError != m.LastError || got.Provider != "p" {
		t.Errorf("round trip: %+v %v", got, err)
	}
	if r := fromRow(store.Mailbox{State: "oauth2-user frozen"}); !r.NeedsReenroll {
		t.Error("an unknown state is usable")
	}
	if err := st.DeleteDeviceCredential(ctx, "m@x", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing device: %v", err)
	}
}
