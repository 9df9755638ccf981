package oauth

import (
	"context"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/store"
	"github.com/popbridge/popbridge/upstream"
)

// TestDeviceViewsOAuth2: with a store, each OAuth2 device password is a
// device of its own (docs/policy.md, "Devices"): the phone's DELE hides the
// message from the phone only, the desk still sees it, and it leaves the
// mailbox once the desk deleted it too. The device is the one whose
// password logged in; the login name carries no device.
func TestDeviceViewsOAuth2(t *testing.T) {
	st, err := store.Open(context.Background(), "sqlite::memory:", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newEnv(t, envOptions{upstream: func(o *upstream.Options) { o.State, o.DeviceSeparator = st, "#" }})
	e.dc.Append(t, alice, "INBOX", message(1))
	e.dc.Append(t, alice, "INBOX", message(2))
	e.enroll(t, alice, map[string]string{"phone": "phone-pw", "desk": "desk-pw"})
	stat := func(pw string) string {
		t.Helper()
		c, r := e.login(t, alice, pw)
		if !strings.HasPrefix(r, "+OK") {
			t.Fatalf("login with %s: %s", pw, r)
		}
		s := c.OK("STAT")
		c.OK("QUIT")
		return s
	}
	stat("desk-pw") // the desk is known
	c, _ := e.login(t, alice, "phone-pw")
	c.OK("DELE 1")
	c.OK("QUIT")
	if got := stat("phone-pw"); !strings.HasPrefix(got, "+OK 1 ") {
		t.Errorf("phone after its DELE: %q, want 1 message", got)
	}
	if got := stat("desk-pw"); !strings.HasPrefix(got, "+OK 2 ") {
		t.Errorf("desk after the phone's DELE: %q, want 2 messages", got)
	}
	if n := len(e.dc.Messages(t, alice, "INBOX")); n != 2 {
		t.Fatalf("upstream holds %d messages after the phone's DELE, want 2", n)
	}
	c, _ = e.login(t, alice, "desk-pw")
	c.OK("DELE 1")
	c.OK("QUIT")
	if n := len(e.dc.Messages(t, alice, "INBOX")); n != 1 {
		t.Errorf("upstream holds %d messages after both deleted, want 1", n)
	}
}

// TestRestoreAppMode: in OAuth2 application mode popbridge restore opens
// the mailbox with the application token, so a quarantined message is back
// at once; a user-mode mailbox has no such access and is queued.
func TestRestoreAppMode(t *testing.T) {
	st, err := store.Open(context.Background(), "sqlite::memory:", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	quarantine := policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Quarantine, Mailbox: policy.DefaultQuarantineMailbox}}
	e := newEnv(t, envOptions{mode: ModeApp, appIntro: true, upstream: func(o *upstream.Options) {
		o.State, o.Passive, o.Policy = st, true, quarantine
		o.Resolver.Default.Policy = quarantine
	}})
	ctx := context.Background()
	e.dc.Append(t, alice, "INBOX", message(1))
	if err := e.m.AllowApp(ctx, alice, "corp"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetDevicePassword(ctx, alice, "scanner", "scan-pw", cheap); err != nil {
		t.Fatal(err)
	}
	c, r := e.login(t, alice, "scan-pw")
	if !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login: %s", r)
	}
	c.OK("DELE 1")
	c.OK("QUIT")
	if n := len(e.dc.Messages(t, alice, "INBOX")); n != 0 {
		t.Fatalf("INBOX holds %d messages after the quarantine", n)
	}
	n, err := e.be.RestoreApp(ctx, alice, upstream.RestoreFilter{})
	if err != nil || n != 1 {
		t.Fatalf("RestoreApp: %d, %v", n, err)
	}
	if got := e.dc.Messages(t, alice, "INBOX"); len(got) != 1 {
		t.Errorf("INBOX holds %d messages after the restore, want 1", len(got))
	}
	if got := e.dc.Messages(t, alice, policy.DefaultQuarantineMailbox); len(got) != 0 {
		t.Errorf("quarantine still holds %d messages", len(got))
	}
	rows, err := st.Journal(ctx, store.JournalQuery{User: alice})
	if err != nil || len(rows) != 2 || rows[0].Outcome != upstream.OutcomeRestored || rows[1].Action != upstream.ActionRestore ||
		rows[1].Outcome != upstream.OutcomeApplied {
		t.Errorf("journal %+v %v", rows, err)
	}
}
