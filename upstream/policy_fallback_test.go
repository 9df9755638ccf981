package upstream

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// TestUpdateFallbacks covers the capability fallbacks of docs/policy.md against
// imapmemserver restricted to IMAP4rev1 (no UIDPLUS, no MOVE), beyond the
// single-message cases of TestUpdate: several scattered UIDs, a message
// another client flags \Deleted during the session, a message the session
// deletes that already carried \Deleted, Trash created or already there,
// the client text of the failure, and what the next session lists.
//
// Each case starts with INBOX messages fb1..fb6 (POP3 numbers 1..6).
func TestUpdateFallbacks(t *testing.T) {
	expunge := policy.Action{Kind: policy.Expunge}
	flag := policy.Action{Kind: policy.Flag}
	trash := policy.Action{Kind: policy.Move, Mailbox: "Trash"}
	honor := func(a policy.Action, seen bool) policy.Policy {
		return policy.Policy{Delete: policy.Honor, Action: a, MarkSeen: seen}
	}
	onDownload := func(a policy.Action, seen bool) policy.Policy {
		return policy.Policy{Delete: policy.OnDownload, Action: a, MarkSeen: seen}
	}
	deleted := []imap.Flag{imap.FlagDeleted}

	tests := []struct {
		name   string
		policy policy.Policy
		// pre are flags set on APPEND, by message; midSession get
		// \Deleted from another client after login.
		pre        map[int][]imap.Flag
		midSession []int
		// trashBefore is a message already in Trash ("fb9"), or 0.
		trashBefore int
		dele, retr  []int
		wantErr     bool
		// inbox and trash: message -> its flags afterwards (lower case,
		// sorted); trash nil means Trash must not exist.
		inbox, trash map[int]string
	}{
		{
			name:   "expunge, several UIDs, no foreign: plain EXPUNGE",
			policy: honor(expunge, true),
			dele:   []int{1, 3, 5}, retr: []int{2, 3},
			inbox: map[int]string{2: `\seen`, 4: ``, 6: ``},
		},
		{
			name:   "expunge on-download, no foreign",
			policy: onDownload(expunge, false),
			dele:   []int{1}, retr: []int{2, 4},
			inbox: map[int]string{3: ``, 5: ``, 6: ``},
		},
		{
			name:   "expunge, foreign \\Deleted at login: nothing expunged, ours undone",
			policy: honor(expunge, false),
			pre:    map[int][]imap.Flag{6: deleted},
			dele:   []int{1, 3, 5}, retr: []int{2},
			wantErr: true,
			inbox:   map[int]string{1: ``, 2: ``, 3: ``, 4: ``, 5: ``, 6: `\deleted`},
		},
		{
			name:       "expunge, foreign \\Deleted set during the session",
			policy:     honor(expunge, false),
			midSession: []int{6},
			dele:       []int{1, 2},
			wantErr:    true,
			inbox:      map[int]string{1: ``, 2: ``, 3: ``, 4: ``, 5: ``, 6: `\deleted`},
		},
		{
			name:    "expunge of a message already \\Deleted, with a foreign one: its \\Deleted stays",
			policy:  honor(expunge, false),
			pre:     map[int][]imap.Flag{5: deleted, 6: deleted},
			dele:    []int{1, 5},
			wantErr: true,
			inbox:   map[int]string{1: ``, 2: ``, 3: ``, 4: ``, 5: `\deleted`, 6: `\deleted`},
		},
		{
			// The other client's \Deleted is not ours to remove (docs/design.md#delete-policy-and-safety:
			// "our \Deleted flags are removed again").
			name:       "expunge, another client flags one of our messages \\Deleted during the session",
			policy:     honor(expunge, false),
			pre:        map[int][]imap.Flag{6: deleted},
			midSession: []int{2},
			dele:       []int{1, 2},
			wantErr:    true,
			inbox:      map[int]string{1: ``, 2: `\deleted`, 3: ``, 4: ``, 5: ``, 6: `\deleted`},
		},
		{
			name:   "expunge of a message already \\Deleted, no other: SEARCH finds only ours",
			policy: honor(expunge, false),
			pre:    map[int][]imap.Flag{5: deleted},
			dele:   []int{1, 5},
			inbox:  map[int]string{2: ``, 3: ``, 4: ``, 6: ``},
		},
		{
			name:   "move:Trash without MOVE, Trash missing: created, COPY then EXPUNGE",
			policy: onDownload(trash, true),
			dele:   []int{1, 4}, retr: []int{2},
			inbox: map[int]string{3: ``, 5: ``, 6: ``},
			trash: map[int]string{1: ``, 2: `\seen`, 4: ``},
		},
		{
			name:        "move:Trash without MOVE, Trash exists",
			policy:      honor(trash, false),
			trashBefore: 9,
			dele:        []int{2, 6},
			inbox:       map[int]string{1: ``, 3: ``, 4: ``, 5: ``},
			trash:       map[int]string{2: ``, 6: ``, 9: ``},
		},
		{
			// The expunge sequence that follows the COPY would refuse, so
			// the guard runs first: no copy (each retry would add one) and
			// no Trash created.
			name:    "move:Trash without MOVE, foreign \\Deleted: nothing copied, originals stay",
			policy:  honor(trash, false),
			pre:     map[int][]imap.Flag{6: deleted},
			dele:    []int{1, 2},
			wantErr: true,
			inbox:   map[int]string{1: ``, 2: ``, 3: ``, 4: ``, 5: ``, 6: `\deleted`},
		},
		{
			name:   "flag without UIDPLUS and MOVE, foreign \\Deleted: never expunges",
			policy: onDownload(flag, false),
			pre:    map[int][]imap.Flag{6: deleted},
			dele:   []int{1}, retr: []int{2},
			inbox: map[int]string{1: `$pop3deleted \seen`, 2: `$pop3deleted \seen`, 3: ``, 4: ``, 5: ``, 6: `\deleted`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			s := startMem(t, capsRev1)
			for i := 1; i <= 6; i++ {
				s.append(t, "INBOX", fbMessage(i), tt.pre[i]...)
			}
			if tt.trashBefore != 0 {
				if err := s.user.Create("Trash", nil); err != nil {
					t.Fatal(err)
				}
				s.append(t, "Trash", fbMessage(tt.trashBefore))
			}
			m := login(t, newBackend(t, s.url(), func(o *Options) { o.Policy = tt.policy }))
			if m.caps.Has(imap.CapUIDPlus) || m.caps.Has(imap.CapMove) {
				t.Fatalf("the server offers UIDPLUS or MOVE: %v", m.caps)
			}
			for _, n := range tt.midSession {
				fbStoreDeleted(t, s.addr, n)
			}
			for _, n := range tt.retr {
				body, err := m.Retrieve(context.Background(), n)
				if err != nil {
					t.Fatalf("Retrieve %d: %v", n, err)
				}
				readAll(t, body)
			}
			err := m.Update(context.Background(), pop3server.Marks{Deleted: tt.dele, Retrieved: tt.retr})
			if tt.wantErr {
				// What QUIT answers: the fixed text, never upstream text.
				var e *pop3server.Error
				if !errorsAs(err, &e) || e.Code != pop3server.CodeSysTemp || e.Text != "some deleted messages not removed" {
					t.Fatalf("Update: %v, want [SYS/TEMP] some deleted messages not removed", err)
				}
			} else if err != nil {
				t.Fatalf("Update: %v", err)
			}
			m.Close()

			if got, want := fbState(inspect(t, s.addr, "INBOX")), fbWant(tt.inbox); got != want {
				t.Errorf("INBOX after Update:\n got: %s\nwant: %s", got, want)
			}
			hasTrash := slices.Contains(fbMailboxes(t, s.addr), "Trash")
			switch {
			case tt.trash == nil && hasTrash:
				t.Errorf("Trash exists, want none")
			case tt.trash != nil && !hasTrash:
				t.Errorf("no Trash, want %s", fbWant(tt.trash))
			case tt.trash != nil:
				if got, want := fbState(inspect(t, s.addr, "Trash")), fbWant(tt.trash); got != want {
					t.Errorf("Trash after Update:\n got: %s\nwant: %s", got, want)
				}
			}

			// The next session lists what remains, minus $POP3Deleted.
			visible := 0
			for _, f := range tt.inbox {
				if !strings.Contains(f, "$pop3deleted") {
					visible++
				}
			}
			next := login(t, newBackend(t, s.url(), func(o *Options) { o.Policy = tt.policy }))
			if got := len(next.Messages()); got != visible {
				t.Errorf("the next session lists %d messages, want %d", got, visible)
			}
		})
	}
}

// fbMessage is test message i, recognisable by its subject "fb<i>".
func fbMessage(i int) []byte { return testMessage(fmt.Sprintf("fb%d", i), 2) }

// fbNumber is the i of a message made by fbMessage, or 0.
func fbNumber(body []byte) int {
	var i int
	if j := bytes.Index(body, []byte("\r\nSubject: fb")); j >= 0 {
		_, _ = fmt.Sscanf(string(body[j+len("\r\nSubject: fb"):]), "%d", &i)
	}
	return i
}

// fbState is a mailbox as "i(flags) ..." in message order, flags lower
// case (imapmemserver lower-cases keywords) and sorted, \Recent left out.
func fbState(msgs []stored) string {
	want := make(map[int]string)
	var dup []string
	for _, m := range msgs {
		var flags []string
		for _, f := range m.Flags {
			if l := strings.ToLower(string(f)); l != `\recent` {
				flags = append(flags, l)
			}
		}
		slices.Sort(flags)
		n := fbNumber(m.Body)
		if _, ok := want[n]; ok {
			dup = append(dup, fmt.Sprintf("fb%d twice", n))
		}
		want[n] = strings.Join(flags, " ")
	}
	return fbWant(want) + strings.Join(dup, " ")
}

func fbWant(msgs map[int]string) string {
	var b strings.Builder
	for _, i := range slices.Sorted(func(yield func(int) bool) {
		for i := range msgs {
			if !yield(i) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "fb%d(%s) ", i, msgs[i])
	}
	return b.String()
}

// fbStoreDeleted flags INBOX message n (UID n: appended first) \Deleted
// from a separate connection, as another IMAP client would.
func fbStoreDeleted(t *testing.T, addr string, n int) {
	t.Helper()
	c := fbClient(t, addr)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := c.Store(imap.UIDSetNum(imap.UID(n)), store, nil).Close(); err != nil {
		t.Fatalf("another client's STORE \\Deleted: %v", err)
	}
	_ = c.Logout().Wait()
}

// fbMailboxes lists the test user's mailboxes.
func fbMailboxes(t *testing.T, addr string) []string {
	t.Helper()
	c := fbClient(t, addr)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Logout().Wait()
	var out []string
	for _, l := range list {
		out = append(out, l.Mailbox)
	}
	return out
}

func fbClient(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}
