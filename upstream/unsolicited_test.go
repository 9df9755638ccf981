package upstream

import (
	"bytes"
	"errors"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/pop3server"
)

// TestBodyAfterUnsolicitedFlagUpdate is the soak's "wrong-message":
// another session changes a message's flags, and the server sends the
// flag update, carrying the message's UID, just before its answer to our
// UID FETCH. go-imap hands the update to our command as the answer for
// that UID and drops the real answer as a duplicate, so the FETCH seemed
// to end without a body, and popbridge reported a message that exists as
// expunged: -ERR at RETR, a TOP cut off before its dot. Each RETR and TOP
// here meets such an update before every answer; all must be whole.
func TestBodyAfterUnsolicitedFlagUpdate(t *testing.T) {
	s, err := imapscript.New(imapscript.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.AddUser(testUser, testPass)
	msg := testMessage("flagged meanwhile", 3000) // TOP fetches its text in several chunks
	s.Append(testUser, "INBOX", testMessage("first", 2))
	s.Append(testUser, "INBOX", msg)
	u, err := ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	m := login(t, newBackend(t, u))
	steal := func(times int) {
		s.AddRule(imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.FlagUpdateFirst, Times: times})
	}

	for _, times := range []int{1, maxFetchTries - 1} {
		steal(times)
		body, err := m.Retrieve(t.Context(), 2)
		if err != nil {
			t.Fatalf("RETR of a message that exists, %d updates first: %v", times, err)
		}
		if got := readAll(t, body); !bytes.Equal(got, msg) {
			t.Fatalf("RETR: %d octets, want the message's %d", len(got), len(msg))
		}
	}
	for _, lines := range []int{0, 5, 2900} {
		steal(1)
		body, err := m.Top(t.Context(), 2, lines)
		if err != nil {
			t.Fatalf("TOP 2 %d: %v", lines, err)
		}
		if got, want := readAll(t, body), topOf(msg, lines); !bytes.Equal(got, want) {
			t.Fatalf("TOP 2 %d: %d octets, want %d", lines, len(got), len(want))
		}
	}
	// A message that is really gone is still "no such message".
	s.Expunge(testUser, "INBOX", s.Messages(testUser, "INBOX")[0].UID)
	if _, err := m.Retrieve(t.Context(), 1); !errors.Is(err, pop3server.ErrNoSuchMessage) {
		t.Fatalf("RETR of an expunged message: %v, want no such message", err)
	}
	// Updates without end: a temporary failure, never "no such message"
	// for a message the server keeps reporting.
	s.ClearRules()
	steal(0)
	_, err = m.Retrieve(t.Context(), 2)
	if errors.Is(err, pop3server.ErrNoSuchMessage) || !errors.Is(err, pop3server.ErrTemporary) {
		t.Fatalf("RETR answered only by flag updates: %v, want a temporary failure", err)
	}
}
