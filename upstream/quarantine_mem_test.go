package upstream

import (
	"context"
	"testing"

	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// TestQuarantineWithoutUIDPLUS: on a server without UIDPLUS and MOVE
// (imapmemserver limited to IMAP4rev1), quarantine and a queued restore
// use COPY and the guarded plain EXPUNGE.
func TestQuarantineWithoutUIDPLUS(t *testing.T) {
	s := startMem(t, capsRev1)
	s.append(t, "INBOX", testMessage("keep", 1))
	s.append(t, "INBOX", testMessage("gone", 1))
	q := policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Quarantine, Mailbox: policy.DefaultQuarantineMailbox}}
	st := newTestState(t)
	b := newBackend(t, s.url(), func(o *Options) { o.Policy, o.State, o.Passive = q, st, true })
	m := login(t, b)
	if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{2}}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if got := uidsOf(inspect(t, s.addr, "INBOX")); len(got) != 1 {
		t.Fatalf("INBOX after the quarantine: %v", got)
	}
	if got := inspect(t, s.addr, policy.DefaultQuarantineMailbox); len(got) != 1 {
		t.Fatalf("quarantine: %d messages", len(got))
	}
	if _, n, err := b.QueueRestore(context.Background(), testUser, RestoreFilter{}); err != nil || n != 1 {
		t.Fatalf("QueueRestore: %d %v", n, err)
	}
	if got := len(login(t, b).Messages()); got != 2 {
		t.Errorf("after the queued restore the session lists %d messages, want 2", got)
	}
	if got := inspect(t, s.addr, policy.DefaultQuarantineMailbox); len(got) != 0 {
		t.Errorf("quarantine still holds %d messages", len(got))
	}
}
