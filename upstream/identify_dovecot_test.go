package upstream

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// A real Dovecot identifies itself (ID name "Dovecot"); with SendID off,
// popbridge says at startup that Dovecot will penalize its own address,
// and what to do; with SendID on it says nothing. No credentials are sent.
func TestDovecotWithoutSendIDWarns(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{})
	u := &URL{Scheme: SchemeInsecure, Host: d.IMAPAddr}
	b := newBackend(t, u)
	id, err := b.Identify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "Dovecot" || !id.IsDovecot() {
		t.Fatalf("identity %+v, want ID name Dovecot", id)
	}
	for _, sendID := range []bool{false, true} {
		var log bytes.Buffer
		b := newBackend(t, u, func(o *Options) {
			o.SendID = sendID
			o.Logger = zerolog.New(&log)
		})
		b.WarnIfDovecotWithoutSendID(context.Background())
		warned := strings.Contains(log.String(), "login_trusted_networks")
		if warned == sendID {
			t.Errorf("SendID %v: log %q", sendID, log.String())
		}
	}
	if strings.Contains(d.Log(), "auth failed") || strings.Contains(d.Log(), "Login: user=") {
		t.Errorf("identifying the upstream logged in or failed a login:\n%s", d.Log())
	}
}

// A server that is not Dovecot gets no warning.
func TestIdentityOfOtherServers(t *testing.T) {
	for _, id := range []Identity{
		{Greeting: "* OK [CAPABILITY IMAP4rev1] Cyrus IMAP ready"},
		{Greeting: "* OK ready", Name: "Cyrus"},
	} {
		if id.IsDovecot() {
			t.Errorf("%+v taken for Dovecot", id)
		}
	}
	if !(Identity{Greeting: "* OK [CAPABILITY IMAP4rev1 ID] Dovecot (Debian) ready."}).IsDovecot() {
		t.Error("Dovecot's default greeting not recognized")
	}
}
