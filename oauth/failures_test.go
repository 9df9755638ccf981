package oauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// parallelRetr logs in n times at once as alice with password, on the
// bridge bridge(i) gives for login i, and checks each RETR 1 is want.
func parallelRetr(t *testing.T, n int, bridge func(i int) *env, password string, want []byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := bridge(i).login(t, alice, password)
			if !strings.HasPrefix(r, "+OK") {
				errs <- r
				return
			}
			if st, body, err := c.TryMulti("RETR 1"); err != nil || !bytes.Equal(body, want) {
				errs <- st
			}
			c.TryCmd("QUIT")
		}()
	}
	wg.Wait()
	close(errs)
	for r := range errs {
		t.Errorf("parallel login: %s", r)
	}
}

// mechs are the SASL mechanisms every failure case runs over.
var mechs = []string{"oauthbearer", "xoauth2"}

func (e *env) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		base, label, _ := strings.Cut(name, "|")
		if mf.GetName() != base {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName()+"="+l.GetValue() == label {
					ok = true
				}
			}
			if !ok {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestExpiryOneRefreshFor20ParallelLogins(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech})
			want := message(1)
			e.dc.Append(t, alice, "INBOX", want)
			e.enroll(t, alice, map[string]string{"scanner": "pw"})
			// The access token lives an hour: move past it on both clocks
			// (the bridge's Manager reads the server's).
			e.idp.Advance(61 * time.Minute)
			parallelRetr(t, 20, func(int) *env { return e }, "pw", want)
			if n := e.idp.TokenRequests("refresh_token"); n != 1 {
				t.Errorf("%d refresh requests for 20 parallel logins, want exactly 1", n)
			}
			if got := e.metric(t, "popbridge_oauth_token_refreshes_total|result=ok"); got != 1 {
				t.Errorf("refreshes{result=ok} = %v, want 1", got)
			}
			// The rotated refresh token was stored: the next expiry
			// refreshes again with it, and the server saw no reuse.
			e.idp.Advance(61 * time.Minute)
			c, r := e.login(t, alice, "pw")
			if !strings.HasPrefix(r, "+OK") {
				t.Fatalf("login after the second expiry: %s", r)
			}
			c.OK("QUIT")
			if n := e.idp.TokenRequests("refresh_token"); n != 2 || e.idp.ReuseDetected() {
				t.Errorf("after a second expiry: %d refreshes (want 2), reuse detected %v", n, e.idp.ReuseDetected())
			}
		})
	}
}

func TestRotationReuseDetection(t *testing.T) {
	// A copy of an old refresh token used elsewhere makes the server
	// revoke the grant; the next refresh then fails with invalid_grant.
	e := newEnv(t, envOptions{})
	e.enroll(t, alice, map[string]string{"scanner": "pw"})
	rec, err := e.st.GetMailbox(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := e.m.o.Key.Open(alice, rec.SealedGrant)
	oldRT := string(pt) // contains the first refresh token
	e.idp.Advance(61 * time.Minute)
	if _, fresh, err := e.m.AccessToken(context.Background(), alice, ""); err != nil || !fresh {
		t.Fatalf("refresh: fresh=%v %v", fresh, err)
	}
	rec2, _ := e.st.GetMailbox(context.Background(), alice)
	pt2, _ := e.m.o.Key.Open(alice, rec2.SealedGrant)
	if string(pt2) == oldRT {
		t.Fatal("the grant was not rewritten after a refresh")
	}
	// Replay the old refresh token as a thief would.
	if !strings.Contains(oldRT, `"refresh_token":"rt-`) {
		t.Fatalf("unexpected grant JSON")
	}
	i := strings.Index(oldRT, `"refresh_token":"`) + len(`"refresh_token":"`)
	stolen := oldRT[i : i+strings.IndexByte(oldRT[i:], '"')]
	e.idp.ReplayRefresh(t, stolen)
	if !e.idp.ReuseDetected() {
		t.Fatal("the server did not detect the reuse")
	}
	e.idp.Advance(61 * time.Minute)
	_, r := e.login(t, alice, "pw")
	if r != "-ERR [SYS/PERM] mailbox authorization expired, ask your administrator" {
		t.Fatalf("after reuse detection: %q", r)
	}
}

func TestRevokedGrant(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech})
			e.dc.Append(t, alice, "INBOX", message(1))
			e.enroll(t, alice, map[string]string{"scanner": "pw"})
			e.idp.Revoke(alice)
			// The access token is still unexpired by the clock but
			// introspects as inactive: the upstream refuses it, the
			// refresh answers invalid_grant.
			_, r := e.login(t, alice, "pw")
			if r != "-ERR [SYS/PERM] mailbox authorization expired, ask your administrator" {
				t.Fatalf("revoked grant: %q", r)
			}
			rec, _ := e.st.GetMailbox(context.Background(), alice)
			if !rec.NeedsReenroll || rec.LastError != "invalid_grant" {
				t.Errorf("mailbox row: needs re-enroll %v, last error %q", rec.NeedsReenroll, rec.LastError)
			}
			if got := e.metric(t, "popbridge_oauth_mailboxes_needing_reenrollment"); got != 1 {
				t.Errorf("mailboxes needing re-enrollment = %v, want 1", got)
			}
			if !strings.Contains(e.logBuf.String(), "marked for re-enrollment") {
				t.Error("no log line for the re-enrollment mark")
			}
			// Marked: the next login does not even ask the IdP.
			before := e.idp.TokenRequests("")
			_, r = e.login(t, alice, "pw")
			if !strings.HasPrefix(r, "-ERR [SYS/PERM]") || e.idp.TokenRequests("") != before {
				t.Errorf("marked mailbox: %q, %d new token requests", r, e.idp.TokenRequests("")-before)
			}
			// A wrong device password on a marked mailbox is still [AUTH].
			if _, r = e.login(t, alice, "wrong"); !strings.HasPrefix(r, "-ERR [AUTH]") {
				t.Errorf("wrong password on a marked mailbox: %q", r)
			}
		})
	}
}

func TestTemporaryFailures(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech})
			e.dc.Append(t, alice, "INBOX", message(1))
			e.enroll(t, alice, map[string]string{"scanner": "pw"})

			// Dovecot cannot reach its introspection endpoint.
			e.idp.SetIntrospectionDown(true)
			if _, r := e.login(t, alice, "pw"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
				t.Errorf("introspection down: %q", r)
			}
			e.idp.SetIntrospectionDown(false)

			// The token endpoint is down (dropped connections, then 503)
			// while the access token has expired.
			e.idp.Advance(61 * time.Minute)
			for _, down := range []int{-1, 503} {
				e.idp.SetTokenDown(down)
				if _, r := e.login(t, alice, "pw"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
					t.Errorf("token endpoint down (%d): %q", down, r)
				}
			}
			e.idp.SetTokenDown(0)
			rec, _ := e.st.GetMailbox(context.Background(), alice)
			if rec.NeedsReenroll {
				t.Fatal("a temporary failure marked the mailbox for re-enrollment")
			}
			c, r := e.login(t, alice, "pw")
			if !strings.HasPrefix(r, "+OK") {
				t.Fatalf("after recovery: %q", r)
			}
			c.OK("QUIT")
			if got := e.metric(t, "popbridge_oauth_token_refreshes_total|result=temp_failure"); got != 2 {
				t.Errorf("refreshes{result=temp_failure} = %v, want 2", got)
			}
		})
	}
}

func TestWrongDevicePasswordLeavesGrant(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.enroll(t, alice, map[string]string{"scanner": "right"})
	e.idp.Advance(61 * time.Minute) // even an expired token is not refreshed
	before, _ := e.st.GetMailbox(context.Background(), alice)
	requests := e.idp.TokenRequests("")
	for _, tc := range []struct{ user, pw string }{{alice, "wrong"}, {alice, ""}, {"nobody@example.test", "right"}, {"bob@example.test", "right"}} {
		if _, r := e.login(t, tc.user, tc.pw); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Errorf("%s/%q: %q, want [AUTH]", tc.user, tc.pw, r)
		}
	}
	after, _ := e.st.GetMailbox(context.Background(), alice)
	if !bytes.Equal(before.SealedGrant, after.SealedGrant) || before.Version != after.Version || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Error("a wrong device password changed the stored grant")
	}
	if n := e.idp.TokenRequests("") - requests; n != 0 {
		t.Errorf("%d token requests after wrong passwords, want 0", n)
	}
	if strings.Contains(e.logBuf.String(), "wrong") || strings.Contains(e.logBuf.String(), "right") {
		t.Error("a device password reached the log")
	}
}

func TestDevicesRevocableAlone(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.dc.Append(t, alice, "INBOX", message(1))
	e.enroll(t, alice, map[string]string{"scanner": "scan-pw", "pbx": "pbx-pw"})
	ctx := context.Background()
	for _, pw := range []string{"scan-pw", "pbx-pw"} {
		c, r := e.login(t, alice, pw)
		if !strings.HasPrefix(r, "+OK") {
			t.Fatalf("%s: %q", pw, r)
		}
		c.OK("QUIT")
	}
	// Revoked while its password is in the verifier's cache: refused at once.
	if err := e.st.DeleteDeviceCredential(ctx, alice, "scanner"); err != nil {
		t.Fatal(err)
	}
	if _, r := e.login(t, alice, "scan-pw"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("revoked device: %q", r)
	}
	c, r := e.login(t, alice, "pbx-pw")
	if !strings.HasPrefix(r, "+OK") {
		t.Fatalf("the other device after a revoke: %q", r)
	}
	c.OK("QUIT")
	// The same password on another mailbox is not that mailbox's.
	if _, r := e.login(t, "bob@example.test", "pbx-pw"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("another mailbox with this password: %q", r)
	}
}

func TestAppMode(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech, mode: ModeApp, appIntro: true})
			want := message(2)
			e.dc.Append(t, alice, "INBOX", want)
			e.dc.Append(t, "bob@example.test", "INBOX", message(3))
			ctx := context.Background()
			for _, mb := range []string{alice, "bob@example.test"} {
				if err := e.m.AllowApp(ctx, mb, "corp"); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.m.SetDevicePassword(ctx, alice, "scanner", "alice-pw", cheap); err != nil {
				t.Fatal(err)
			}
			if err := e.m.SetDevicePassword(ctx, "bob@example.test", "scanner", "bob-pw", cheap); err != nil {
				t.Fatal(err)
			}
			c, r := e.login(t, alice, "alice-pw")
			if !strings.HasPrefix(r, "+OK") {
				t.Fatalf("app mode: %q", r)
			}
			if _, body, _ := c.TryMulti("RETR 1"); !bytes.Equal(body, want) {
				t.Errorf("RETR 1 in app mode: %q", body)
			}
			c.OK("QUIT")
			c, r = e.login(t, "bob@example.test", "bob-pw")
			if !strings.HasPrefix(r, "+OK") {
				t.Fatalf("app mode, second mailbox: %q", r)
			}
			c.OK("QUIT")
			if n := e.idp.TokenRequests("client_credentials"); n != 1 {
				t.Errorf("%d client-credentials requests for two mailboxes, want 1 (one app token)", n)
			}
			// Not allow-listed: [AUTH], whatever the password; and one
			// mailbox's device password does not open another.
			if _, r := e.login(t, "carol@example.test", "alice-pw"); !strings.HasPrefix(r, "-ERR [AUTH]") {
				t.Errorf("mailbox not allow-listed: %q", r)
			}
			if _, r := e.login(t, "bob@example.test", "alice-pw"); !strings.HasPrefix(r, "-ERR [AUTH]") {
				t.Errorf("another mailbox's device password: %q", r)
			}
			// The tenant withdrew the app's access: fresh tokens are
			// refused twice, then the mailbox is marked.
			e.idp.RefuseApp(true)
			if _, r := e.login(t, alice, "alice-pw"); r != "-ERR [SYS/PERM] mailbox authorization expired, ask your administrator" {
				t.Errorf("app refused: %q", r)
			}
			rec, _ := e.st.GetMailbox(ctx, alice)
			if !rec.NeedsReenroll || !strings.Contains(rec.LastError, "refused fresh tokens twice") {
				t.Errorf("alice's row: needs re-enroll %v, last error %q", rec.NeedsReenroll, rec.LastError)
			}
			if n := e.idp.TokenRequests("client_credentials"); n != 3 {
				t.Errorf("%d client-credentials requests, want 3 (the shared one, then one per refusal)", n)
			}
		})
	}
}

// TestWrongAccountEnrolled: the admin signed in as someone else during
// enrollment, so the upstream refuses every token for this mailbox even
// fresh ones: refreshed once more, then marked.
func TestWrongAccountEnrolled(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech})
			ctx := context.Background()
			e.idp.NextDeviceFlow("bob@example.test")
			var out bytes.Buffer
			tok, err := e.m.DeviceFlow(ctx, e.m.Provider("corp"), alice, &out)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.m.SaveGrant(ctx, alice, "corp", tok); err != nil {
				t.Fatal(err)
			}
			if err := e.m.SetDevicePassword(ctx, alice, "scanner", "pw", cheap); err != nil {
				t.Fatal(err)
			}
			if _, r := e.login(t, alice, "pw"); r != "-ERR [SYS/PERM] mailbox authorization expired, ask your administrator" {
				t.Fatalf("tokens of another account: %q", r)
			}
			// The enrolled token (not fresh), then two fresh ones.
			if n := e.idp.TokenRequests("refresh_token"); n != 2 {
				t.Errorf("%d refreshes, want 2", n)
			}
			rec, _ := e.st.GetMailbox(ctx, alice)
			if !rec.NeedsReenroll || !strings.Contains(rec.LastError, "refused fresh tokens twice") {
				t.Errorf("row: needs re-enroll %v, %q", rec.NeedsReenroll, rec.LastError)
			}
		})
	}
}

// TestGoogleServiceAccount is oauth2-app with a Google Workspace service
// account (domain-wide delegation): a token per mailbox, each acting as
// its user, so Dovecot checks the exact user as for a delegated grant.
func TestGoogleServiceAccount(t *testing.T) {
	for _, mech := range mechs {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, envOptions{mech: mech, mode: ModeApp})
			pk, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			e.idp.TrustServiceAccount(&pk.PublicKey)
			der, _ := x509.MarshalPKCS8PrivateKey(pk)
			sa, _ := json.Marshal(map[string]string{
				"type": "service_account", "client_email": "popbridge@project.iam.gserviceaccount.com",
				"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
				"token_uri":      e.idp.URL + "/token",
				"private_key_id": "k1",
			})
			saFile := filepath.Join(t.TempDir(), "sa.json")
			os.WriteFile(saFile, sa, 0o600)
			p := &Provider{Name: "corp", Type: TypeGoogle, ServiceAccountFile: saFile}
			if err := p.Load(); err != nil {
				t.Fatal(err)
			}
			e.m.o.Providers["corp"] = p // the bridge's provider corp becomes this one, before any login

			ctx := context.Background()
			want := map[string][]byte{alice: message(5), "bob@example.test": message(6)}
			for mb, msg := range want {
				e.dc.Append(t, mb, "INBOX", msg)
				if err := e.m.AllowApp(ctx, mb, "corp"); err != nil {
					t.Fatal(err)
				}
				if err := e.m.SetDevicePassword(ctx, mb, "scanner", "pw-"+mb, cheap); err != nil {
					t.Fatal(err)
				}
			}
			for mb, msg := range want {
				c, r := e.login(t, mb, "pw-"+mb)
				if !strings.HasPrefix(r, "+OK") {
					t.Fatalf("%s: %q", mb, r)
				}
				if _, body, _ := c.TryMulti("RETR 1"); !bytes.Equal(body, msg) {
					t.Errorf("%s RETR 1: %q", mb, body)
				}
				c.OK("QUIT")
			}
			if n := e.idp.TokenRequests("urn:ietf:params:oauth:grant-type:jwt-bearer"); n != 2 {
				t.Errorf("%d JWT bearer requests for two mailboxes, want 2 (one token per mailbox)", n)
			}
			// Without domain-wide delegation for the scope, Google answers
			// unauthorized_client: a configuration problem, not the mailbox's.
			e.idp.RefuseApp(true)
			if err := e.m.AllowApp(ctx, "carol@example.test", "corp"); err != nil {
				t.Fatal(err)
			}
			if err := e.m.SetDevicePassword(ctx, "carol@example.test", "scanner", "pw-carol", cheap); err != nil {
				t.Fatal(err)
			}
			if _, r := e.login(t, "carol@example.test", "pw-carol"); r != "-ERR [SYS/PERM] mailbox authorization misconfigured, ask your administrator" {
				t.Errorf("no delegation: %q", r)
			}
		})
	}
}
