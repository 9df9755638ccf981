package e2e

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// maildropView is what STAT, LIST and UIDL show.
type maildropView struct {
	count int
	size  int64
	list  listing
	uidl  listing
}

func (v maildropView) equal(o maildropView) bool {
	return v.count == o.count && v.size == o.size && maps.Equal(v.list, o.list) && maps.Equal(v.uidl, o.uidl)
}

func (v maildropView) String() string {
	return fmt.Sprintf("STAT %d %d, LIST %v, UIDL %v", v.count, v.size, v.list, v.uidl)
}

// view polls as a device does (log in, STAT, LIST, UIDL, QUIT).
func view(t *testing.T, b *bridgeproc.Bridge, user string) maildropView {
	t.Helper()
	p := dialPOP3(t, b.POP3)
	p.Login(user, password(user))
	var v maildropView
	v.count, v.size = stat(p)
	v.list, v.uidl = list(p, "LIST"), list(p, "UIDL")
	quit(p)
	return v
}

// cacheRig is a popbridge with its listing cache (the default) and one
// with --cache-entries 0, the oracle, in front of the same Dovecot.
type cacheRig struct {
	d              *testenv.Dovecot
	cached, oracle *bridgeproc.Bridge
	listings       map[string]int // "listing" log lines seen per user
}

func newCacheRig(t *testing.T, users ...string) *cacheRig {
	d := startDovecot(t, false, users...)
	return &cacheRig{d: d, cached: startBridge(t, d), oracle: startBridge(t, d, "--cache-entries", "0"), listings: map[string]int{}}
}

// check polls through the cache and fails unless the client sees exactly
// what an uncached popbridge shows, with want messages. It returns how
// the cached login revalidated its listing ("fresh", "append",
// "changed" or "full"), from popbridge's debug log.
func (r *cacheRig) check(t *testing.T, user string, want int) string {
	t.Helper()
	got := view(t, r.cached, user)
	decision := r.decision(t, user)
	fresh := view(t, r.oracle, user)
	if !got.equal(fresh) {
		t.Errorf("%s through the cache: %v\nwithout it: %v", user, got, fresh)
	}
	if fresh.count != want {
		t.Errorf("%s: %d messages, want %d", user, fresh.count, want)
	}
	return decision
}

// decision returns the cache field of the cached bridge's next "listing"
// line for user.
func (r *cacheRig) decision(t *testing.T, user string) string {
	t.Helper()
	skip := r.listings[user]
	e := r.cached.WaitEntry(10*time.Second, func(e map[string]any) bool {
		if e["message"] != "listing" || e["user"] != user {
			return false
		}
		skip--
		return skip < 0
	})
	if e == nil {
		t.Fatalf("no listing logged for %s's login", user)
	}
	r.listings[user]++
	s, _ := e["cache"].(string)
	return s
}

func appendMsgs(t *testing.T, d *testenv.Dovecot, user string, from, to int) []imap.UID {
	t.Helper()
	var uids []imap.UID
	for i := from; i <= to; i++ {
		body := fmt.Sprintf("From: %s@example.com\r\nSubject: cache %d\r\n\r\n", user, i)
		for range i {
			body += "line of text\r\n"
		}
		uids = append(uids, d.Append(t, user, "INBOX", []byte(body)))
	}
	return uids
}

// TestCacheThroughTheBinary: with the listing cache on (the default), a
// poll shows what an uncached popbridge shows after every kind of change
// another client, another popbridge or this one makes; and an unchanged
// mailbox is served from the cache.
func TestCacheThroughTheBinary(t *testing.T) {
	users := []string{"c-new", "c-expunge", "c-swap", "c-flag", "c-replica", "c-own", "c-uidv", "c-a", "c-b"}
	r := newCacheRig(t, users...)
	d := r.d

	t.Run("unchanged", func(t *testing.T) {
		appendMsgs(t, d, "c-new", 1, 3)
		if got := r.check(t, "c-new", 3); got != "full" {
			t.Errorf("first login: %s, want full", got)
		}
		if got := r.check(t, "c-new", 3); got != "fresh" {
			t.Errorf("unchanged mailbox: %s, want fresh", got)
		}
	})
	t.Run("new mail", func(t *testing.T) {
		appendMsgs(t, d, "c-new", 4, 5)
		if got := r.check(t, "c-new", 5); got == "full" {
			t.Errorf("new mail: %s, want an incremental fetch", got)
		}
	})
	t.Run("foreign expunge", func(t *testing.T) {
		uids := appendMsgs(t, d, "c-expunge", 1, 4)
		r.check(t, "c-expunge", 4)
		d.Expunge(t, "c-expunge", "INBOX", uids[2])
		if got := r.check(t, "c-expunge", 3); got != "full" {
			t.Errorf("after an expunge: %s, want full", got)
		}
	})
	t.Run("foreign expunge and append, same count", func(t *testing.T) {
		uids := appendMsgs(t, d, "c-swap", 1, 3)
		r.check(t, "c-swap", 3)
		d.Expunge(t, "c-swap", "INBOX", uids[0])
		appendMsgs(t, d, "c-swap", 4, 4)
		r.check(t, "c-swap", 3)
	})
	t.Run("hidden by another IMAP session", func(t *testing.T) {
		uids := appendMsgs(t, d, "c-flag", 1, 3)
		r.check(t, "c-flag", 3)
		d.SetFlags(t, "c-flag", "INBOX", uids[1], "$POP3Deleted")
		r.check(t, "c-flag", 2)
	})
	t.Run("hidden by another popbridge process", func(t *testing.T) {
		appendMsgs(t, d, "c-replica", 1, 3)
		r.check(t, "c-replica", 3)
		replica := startBridge(t, d, "--delete-action", "flag")
		p := dialPOP3(t, replica.POP3)
		p.Login("c-replica", password("c-replica"))
		p.OK("DELE 1")
		if s := quit(p); s[:3] != "+OK" {
			t.Fatalf("QUIT on the replica: %q", s)
		}
		waitSessionEnd(t, replica, localPort(p))
		r.check(t, "c-replica", 2)
	})
	t.Run("own QUIT update", func(t *testing.T) {
		appendMsgs(t, d, "c-own", 1, 4)
		r.check(t, "c-own", 4)
		p := dialPOP3(t, r.cached.POP3)
		p.Login("c-own", password("c-own"))
		r.decision(t, "c-own")
		multi(p, "RETR 2")
		p.OK("DELE 1")
		p.OK("DELE 3")
		if s := quit(p); s[:3] != "+OK" {
			t.Fatalf("QUIT: %q", s)
		}
		waitSessionEnd(t, r.cached, localPort(p))
		if got := r.check(t, "c-own", 2); got == "full" {
			t.Errorf("after our own update: %s, want the entry we replaced", got)
		}
	})
	t.Run("UIDVALIDITY changed", func(t *testing.T) {
		doveadm := testenv.RequireTool(t, "doveadm")
		appendMsgs(t, d, "c-uidv", 1, 2)
		r.check(t, "c-uidv", 2)
		v := d.UIDValidity(t, "c-uidv", "INBOX")
		out, err := exec.Command(doveadm, "-c", filepath.Join(d.Dir, "dovecot.conf"), "mailbox", "update",
			"-u", "c-uidv", "--uid-validity", strconv.Itoa(int(v+1000)), "INBOX").CombinedOutput()
		if err != nil {
			t.Fatalf("doveadm: %v\n%s", err, out)
		}
		if got := r.check(t, "c-uidv", 2); got != "full" {
			t.Errorf("after a UIDVALIDITY change: %s, want full", got)
		}
	})
	t.Run("two users", func(t *testing.T) {
		doveadm := testenv.RequireTool(t, "doveadm")
		appendMsgs(t, d, "c-a", 1, 3)
		appendMsgs(t, d, "c-b", 5, 7) // the same UIDs, other sizes
		v := d.UIDValidity(t, "c-a", "INBOX")
		out, err := exec.Command(doveadm, "-c", filepath.Join(d.Dir, "dovecot.conf"), "mailbox", "update",
			"-u", "c-b", "--uid-validity", strconv.Itoa(int(v)), "INBOX").CombinedOutput()
		if err != nil {
			t.Fatalf("doveadm: %v\n%s", err, out)
		}
		r.check(t, "c-a", 3)
		if got := r.check(t, "c-b", 3); got != "full" {
			t.Errorf("first login of c-b after c-a's: %s, want full", got)
		}
		r.check(t, "c-a", 3)
	})
}
