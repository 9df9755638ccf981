package cluster

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/store"
)

// clusterMessage is a small message carrying its number in a header, so a
// POP3 listing can be mapped back to the messages appended. copies > 1
// appends identical copies; noID leaves out the Message-ID.
func clusterMessage(k int, noID bool) []byte {
	id := fmt.Sprintf("Message-ID: <cluster-%d@example.com>\r\n", k)
	if noID {
		id = ""
	}
	return []byte(fmt.Sprintf("From: sender@example.com\r\nTo: shared@example.com\r\nSubject: message %d\r\n"+
		"Date: Mon, 7 Dec 2026 00:%02d:00 +0000\r\n%sX-Cluster-Id: %d\r\n\r\nbody of message %d\r\n", k, k%60, id, k, k))
}

// listing is what one session saw: "X-Cluster-Id UIDL" per message, sorted.
func listing(t *testing.T, addr, user, pass string) []string {
	t.Helper()
	c := pop3client.Dial(t, addr, pop3client.Options{})
	defer c.Close()
	c.MustLine("+OK")
	c.Login(user, pass)
	c.OK("UIDL")
	var out []string
	for _, l := range c.LinesToDot() {
		f := strings.Fields(l)
		c.OK("TOP " + f[0] + " 0")
		id := "?"
		for _, h := range c.LinesToDot() {
			if v, ok := strings.CutPrefix(h, "X-Cluster-Id: "); ok {
				id = v
			}
		}
		out = append(out, id+" "+f[1])
	}
	c.OK("QUIT")
	slices.Sort(out)
	return out
}

// TestClusterUIDLsAgreeAfterRebuild: two replicas sharing one PostgreSQL
// store see a mailbox whose index was rebuilt (new UIDVALIDITY) at the
// same moment, from four concurrent sessions. Every session must show the
// same UIDL for every message — the ones remembered from before the
// rebuild for messages with a unique fingerprint, and one agreed fresh
// UIDL per message for identical copies — so a client moved between
// replicas downloads nothing twice and never loses a message.
func TestClusterUIDLsAgreeAfterRebuild(t *testing.T) {
	t.Parallel()
	testenv.RequireTool(t, "dovecot")
	const user, pass = "shared", "shared-pw"
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: user, Password: pass}}})
	for k := 1; k <= 20; k++ {
		d.Append(t, user, "INBOX", clusterMessage(k, k%7 == 0))
	}
	d.Append(t, user, "INBOX", clusterMessage(5, false)) // an identical copy of message 5
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	bin := bridgeproc.Binary(t)
	a := startReplica(t, "pb1", bin, clusterArgs(d, url)...)
	b := startReplica(t, "pb2", bin, clusterArgs(d, url)...)

	before := listing(t, a.b.POP3, user, pass)
	if got := listing(t, b.b.POP3, user, pass); !slices.Equal(got, before) {
		t.Fatalf("before the rebuild the replicas disagree:\n%v\n%v", before, got)
	}
	d.RebuildIndex(t, user)

	var wg sync.WaitGroup
	after := make([][]string, 4)
	for i := range after {
		addr := a.b.POP3
		if i%2 == 1 {
			addr = b.b.POP3
		}
		wg.Go(func() { after[i] = listing(t, addr, user, pass) })
	}
	wg.Wait()
	for i := 1; i < len(after); i++ {
		if !slices.Equal(after[i], after[0]) {
			t.Fatalf("concurrent sessions after the rebuild disagree:\nsession 0: %v\nsession %d: %v", after[0], i, after[i])
		}
	}
	// Unique messages keep their UIDLs; the two copies of message 5 get
	// two distinct UIDLs (never one for both).
	kept := map[string]bool{}
	for _, l := range before {
		if !strings.HasPrefix(l, "5 ") {
			kept[l] = true
		}
	}
	var fives []string
	for _, l := range after[0] {
		if strings.HasPrefix(l, "5 ") {
			fives = append(fives, l)
		} else if !kept[l] {
			t.Errorf("message %q lost its UIDL in the rebuild (before: %v)", l, before)
		}
	}
	if len(after[0]) != len(before) || len(fives) != 2 || fives[0] == fives[1] {
		t.Errorf("after the rebuild: %v; want %d messages with the copies of 5 on two UIDLs", after[0], len(before))
	}
}

// TestClusterDevicesQuitTogether: two devices of one mailbox (honor
// policy) delete the same messages and QUIT at the same moment on two
// replicas. Neither device's ledger mark may be lost: the deletes are
// applied upstream exactly once — at those QUITs or, at the latest, at the
// next session of either device — and journaled once each.
func TestClusterDevicesQuitTogether(t *testing.T) {
	t.Parallel()
	testenv.RequireTool(t, "dovecot")
	const user, pass = "family", "family-pw"
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: []testenv.User{{Name: user, Password: pass}}})
	for k := 1; k <= 6; k++ {
		d.Append(t, user, "INBOX", clusterMessage(k, false))
	}
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	bin := bridgeproc.Binary(t)
	a := startReplica(t, "pb1", bin, clusterArgs(d, url)...)
	b := startReplica(t, "pb2", bin, clusterArgs(d, url)...)

	// Both devices are known (active) before they delete anything.
	for _, dev := range []string{"phone", "desktop"} {
		c := pop3client.Dial(t, a.b.POP3, pop3client.Options{})
		c.MustLine("+OK")
		c.Login(user+"#"+dev, pass)
		c.OK("QUIT")
		c.Close()
	}

	// Each device deletes messages 1-3 and QUITs on its own replica; the
	// QUITs are sent together.
	var sessions []*pop3client.Client
	for i, dev := range []string{"phone", "desktop"} {
		addr := []string{a.b.POP3, b.b.POP3}[i]
		c := pop3client.Dial(t, addr, pop3client.Options{})
		c.MustLine("+OK")
		c.Login(user+"#"+dev, pass)
		for n := 1; n <= 3; n++ {
			c.OK(fmt.Sprintf("DELE %d", n))
		}
		sessions = append(sessions, c)
	}
	var wg sync.WaitGroup
	answers := make([]string, len(sessions))
	for i, c := range sessions {
		wg.Go(func() { answers[i] = c.Cmd("QUIT") })
	}
	wg.Wait()
	for i, s := range answers {
		if !strings.HasPrefix(s, "+OK") {
			t.Fatalf("QUIT of device %d: %q", i, s)
		}
	}
	// A later session of either device applies whatever became due, if
	// the simultaneous QUITs each saw the other's mark too late.
	c := pop3client.Dial(t, b.b.POP3, pop3client.Options{})
	c.MustLine("+OK")
	c.Login(user+"#phone", pass)
	c.OK("QUIT")
	c.Close()

	msgs := d.Messages(t, user, "INBOX")
	if len(msgs) != 3 {
		t.Fatalf("%d messages left upstream, want 3 (4-6): the deletes of both devices were not applied", len(msgs))
	}
	for _, m := range msgs {
		if strings.Contains(string(m.Body), "X-Cluster-Id: 1\r") || strings.Contains(string(m.Body), "X-Cluster-Id: 2\r") ||
			strings.Contains(string(m.Body), "X-Cluster-Id: 3\r") {
			t.Errorf("a deleted message is still upstream: UID %d", m.UID)
		}
	}
	st, err := store.Open(t.Context(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.Journal(t.Context(), store.JournalQuery{User: user})
	if err != nil {
		t.Fatal(err)
	}
	applied := map[uint32]int{}
	for _, r := range rows {
		if r.Outcome == "applied" {
			applied[r.UID]++
		}
	}
	if len(applied) != 3 {
		t.Errorf("journal: applied rows for UIDs %v, want exactly UIDs 1-3 (rows: %+v)", applied, rows)
	}
	for uid, n := range applied {
		if n != 1 {
			t.Errorf("journal: UID %d applied %d times", uid, n)
		}
	}
}
