package upstream

import (
	"strings"
	"testing"
)

func TestSASLBearerClients(t *testing.T) {
	ob := &oauthBearerClient{user: "a,b=c@example.test", token: "T0K"}
	mech, ir, err := ob.Start()
	if mech != "OAUTHBEARER" || err != nil || string(ir) != "n,a=a=2Cb=3Dc@example.test,\x01auth=Bearer T0K\x01\x01" {
		t.Errorf("OAUTHBEARER start: %s %q %v", mech, ir, err)
	}
	// RFC 7628 3.2.3: the error challenge is answered with %x01, so the
	// server can end the exchange with NO.
	resp, err := ob.Next([]byte(`{"status":"invalid_token","scope":"mail"}`))
	if string(resp) != "\x01" || err != nil || ob.status() != "invalid_token" {
		t.Errorf("OAUTHBEARER error challenge: %q %v %q", resp, err, ob.status())
	}

	xo := &xoauth2Client{user: "alice@example.test", token: "T0K"}
	mech, ir, err = xo.Start()
	if mech != "XOAUTH2" || err != nil || string(ir) != "user=alice@example.test\x01auth=Bearer T0K\x01\x01" {
		t.Errorf("XOAUTH2 start: %s %q %v", mech, ir, err)
	}
	// XOAUTH2 wants an empty response, which go-imap would send as "=":
	// the client stops instead, keeping the status.
	resp, err = xo.Next([]byte(`{"status":"401","schemes":"bearer","scope":"mail"}`))
	if resp != nil || err == nil || xo.status() != "401" {
		t.Errorf("XOAUTH2 error challenge: %q %v %q", resp, err, xo.status())
	}
	if s := challengeStatus([]byte("not json")); s != "error challenge" {
		t.Errorf("a challenge that is not JSON: %q", s)
	}
	if s := challengeStatus([]byte(`{"status":"` + strings.Repeat("x", 100) + `"}`)); len(s) != 40 {
		t.Errorf("a long status is not cut: %d octets", len(s))
	}
}
