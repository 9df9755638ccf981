package upstream

import (
	"bytes"
	"io"
	"testing"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/testing/imapscript"
	"github.com/popbridge/popbridge/pop3server"
)

// TestPrefetchMisbehavingServer: read-ahead against a scripted server that
// does what real ones do on a bad day. Whatever the window's answer lacks
// or carries too much of, each RETR still delivers exactly its own
// message's octets, and nothing stays held.
func TestPrefetchMisbehavingServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rule   imapscript.Rule
		served func(n uint64) bool // of the 12 RETRs, how many came from read-ahead
	}{
		// Every message of the first window is preceded by a flag
		// update for its UID: go-imap hands the updates to the window
		// and drops the bodies; each message is then fetched alone.
		{"flag updates first", imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.FlagUpdateFirst, Times: 1},
			func(n uint64) bool { return n > 0 && n < 12 }},
		// RFC822.SIZE 10 octets short: the bodies outgrow what was
		// reserved for them, are not kept, and stream alone.
		{"understated sizes", imapscript.Rule{At: imapscript.List, Step: imapscript.UnderstateSize},
			func(n uint64) bool { return n == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			s, err := imapscript.New(imapscript.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			s.AddUser(testUser, testPass)
			var msgs [][]byte
			for i := range 12 {
				msgs = append(msgs, testMessage(subject(i), 1+i%3)) // about 120 octets
				s.Append(testUser, "INBOX", msgs[i])
			}
			s.AddRule(tc.rule)
			u, err := ParseURL(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			budget := cache.NewBudget(1 << 20)
			b := newBackend(t, u, func(o *Options) { o.Prefetch = PrefetchOptions{Budget: budget, SessionBytes: 2 << 10} })
			m := login(t, b) // windows of 1 KiB: several per mailbox
			for i := range msgs {
				body, err := m.Retrieve(t.Context(), i+1)
				if err != nil {
					t.Fatalf("RETR %d: %v", i+1, err)
				}
				if got := readAll(t, body); !bytes.Equal(got, msgs[i]) {
					t.Fatalf("RETR %d: %d octets, not message %d's %d", i+1, len(got), i+1, len(msgs[i]))
				}
			}
			m.Close()
			if budget.Used() != 0 {
				t.Errorf("%d octets held after Close", budget.Used())
			}
			if !tc.served(budget.Served()) {
				t.Errorf("%d of 12 served from read-ahead", budget.Served())
			}
		})
	}
}

// TestPrefetchConnectionCut: the upstream connection dies while a window
// is on its way. The session fails with a temporary error, never with
// another message's bytes, and leaves no goroutine and no octet behind.
func TestPrefetchConnectionCut(t *testing.T) {
	checkGoroutines(t)
	s, err := imapscript.New(imapscript.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.AddUser(testUser, testPass)
	var msgs [][]byte
	for i := range 30 {
		msgs = append(msgs, testMessage(subject(i), 5))
		s.Append(testUser, "INBOX", msgs[i])
	}
	u, err := ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	budget := cache.NewBudget(1 << 20)
	b := newBackend(t, u, func(o *Options) { o.Prefetch = PrefetchOptions{Budget: budget, SessionBytes: 4 << 10} })
	m := login(t, b)
	body, err := m.Retrieve(t.Context(), 1) // the first window, and the second one sent
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, body), msgs[0]) {
		t.Fatal("RETR 1: wrong octets")
	}
	if len(m.pf.batches) != 1 {
		t.Fatalf("%d windows outstanding, want 1", len(m.pf.batches))
	}
	// A later window's answer is cut mid-literal.
	s.AddRule(imapscript.Rule{At: imapscript.FetchBody, Step: imapscript.CutMidBody})
	failed := false
	for i := 2; i <= len(msgs) && !failed; i++ {
		body, err := m.Retrieve(t.Context(), i)
		if err != nil {
			wantCode(t, err, pop3server.ErrTemporary)
			failed = true
			break
		}
		got, rerr := io.ReadAll(body)
		body.Close()
		if rerr != nil {
			failed = true
		} else if !bytes.Equal(got, msgs[i-1]) {
			t.Fatalf("RETR %d: octets of another message", i)
		}
	}
	if !failed {
		t.Fatal("every RETR succeeded through a cut connection")
	}
	m.Close()
	if budget.Used() != 0 {
		t.Errorf("%d octets held after Close", budget.Used())
	}
}
