package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// seedMessage is a message to store before a session, with the flags it
// gets on APPEND.
type seedMessage struct {
	Raw   []byte
	Flags []imap.Flag
}

// seedMailbox appends msgs to user's mailbox in order over one IMAP
// connection (creating the mailbox if needed) and returns their UIDs.
// testenv's Append logs in once per message, which a matrix of dozens of
// mailboxes would pay for many times.
func seedMailbox(t testing.TB, d *testenv.Dovecot, user, mailbox string, msgs []seedMessage) []imap.UID {
	t.Helper()
	c := d.Client(t, user)
	if !strings.EqualFold(mailbox, "INBOX") {
		if err := c.Create(mailbox, nil).Wait(); err != nil {
			t.Fatalf("seed %s: create %q: %v", user, mailbox, err)
		}
	}
	var uids []imap.UID
	for i, m := range msgs {
		cmd := c.Append(mailbox, int64(len(m.Raw)), &imap.AppendOptions{Flags: m.Flags})
		if _, err := cmd.Write(m.Raw); err != nil {
			t.Fatalf("seed %s: append message %d: %v", user, i+1, err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatalf("seed %s: append message %d: %v", user, i+1, err)
		}
		data, err := cmd.Wait()
		if err != nil || data.UID == 0 {
			t.Fatalf("seed %s: append message %d: UID %v, %v", user, i+1, data, err)
		}
		uids = append(uids, data.UID)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("seed %s: logout: %v", user, err)
	}
	return uids
}

// mailboxExists reports whether user has a mailbox named exactly name.
func mailboxExists(t testing.TB, d *testenv.Dovecot, user, name string) bool {
	t.Helper()
	c := d.Client(t, user)
	list, err := c.List("", name, nil).Collect()
	if err != nil {
		t.Fatalf("LIST %q of %s: %v", name, user, err)
	}
	_ = c.Logout().Wait()
	return slices.ContainsFunc(list, func(m *imap.ListData) bool { return m.Mailbox == name })
}

// mailboxOrNil is d.Messages, or nil with exists false when the mailbox is
// not there.
func mailboxOrNil(t testing.TB, d *testenv.Dovecot, user, name string) (msgs []testenv.StoredMessage, exists bool) {
	t.Helper()
	if !mailboxExists(t, d, user, name) {
		return nil, false
	}
	return d.Messages(t, user, name), true
}

// flagText is a flag list in a canonical form for comparisons: sorted,
// \Recent left out (session state, which any SELECT takes away).
func flagText(flags []imap.Flag) string {
	var out []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return "(" + strings.Join(out, " ") + ")"
}

// placeText describes, for each named message, where it is and with which
// flags: "name: INBOX (\Seen)", "name: Trash ()", "name: gone", or several
// places if it was duplicated. names gives the order; a message not named
// there is reported as "unexpected".
func placeText(names []string, boxes map[string][]testenv.StoredMessage) string {
	places := make(map[string][]string)
	var unexpected []string
	for _, box := range []string{"INBOX", "Trash"} {
		for _, m := range boxes[box] {
			name := messageName(m.Body)
			entry := fmt.Sprintf("%s %s", box, flagText(m.Flags))
			if !slices.Contains(names, name) {
				unexpected = append(unexpected, fmt.Sprintf("unexpected %q: %s", name, entry))
				continue
			}
			places[name] = append(places[name], entry)
		}
	}
	var b strings.Builder
	for _, n := range names {
		p := places[n]
		if len(p) == 0 {
			p = []string{"gone"}
		}
		fmt.Fprintf(&b, "%-10s %s\n", n+":", strings.Join(p, " + "))
	}
	for _, u := range unexpected {
		b.WriteString(u + "\n")
	}
	return b.String()
}
