package upstream

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// cacheEnv is a cached backend talking to Dovecot through a recording
// proxy, and an uncached one talking to Dovecot directly: the oracle.
type cacheEnv struct {
	e        *dovecotEnv
	proxy    *recordingProxy
	listings *cache.Listings
	plain    bool // revalidate as without CONDSTORE
	mailbox  string
}

func newCacheEnv(t *testing.T, e *dovecotEnv, plain bool) *cacheEnv {
	t.Helper()
	l, err := cache.NewListings(100)
	if err != nil {
		t.Fatal(err)
	}
	return &cacheEnv{e: e, proxy: startRecordingProxy(t, e.d.IMAPAddr), listings: l, plain: plain, mailbox: "INBOX"}
}

// cached returns a backend on the shared cache, through the proxy.
func (ce *cacheEnv) cached(t *testing.T, mod ...func(*Options)) *Backend {
	t.Helper()
	return newBackend(t, ce.proxy.url(), append([]func(*Options){func(o *Options) {
		o.Cache, o.noCondStore, o.Mailbox = ce.listings, ce.plain, ce.mailbox
	}}, mod...)...)
}

// fresh is what an uncached login lists now.
func (ce *cacheEnv) fresh(t *testing.T, user string) []pop3server.MessageInfo {
	t.Helper()
	m := ce.e.login(t, ce.e.backend(t, func(o *Options) { o.Mailbox = ce.mailbox }), user)
	defer m.Close()
	return m.Messages()
}

// check logs in through the cache, fails the test unless STAT, LIST and
// UIDL would show exactly what an uncached login shows, with want
// messages, and returns the commands the cached login sent upstream.
func (ce *cacheEnv) check(t *testing.T, user string, want int) []string {
	t.Helper()
	ce.proxy.take()
	m := ce.e.login(t, ce.cached(t), user)
	got := m.Messages()
	m.Close()
	cmds := ce.proxy.take()
	fresh := ce.fresh(t, user)
	if !slices.Equal(got, fresh) {
		t.Errorf("cached login lists %v; an uncached one %v", got, fresh)
	}
	if len(fresh) != want {
		t.Errorf("%d messages listed, want %d", len(fresh), want)
	}
	return cmds
}

// fullListings counts the UID FETCH 1:* without CHANGEDSINCE in cmds.
func fullListings(cmds []string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(strings.ToUpper(c), "UID FETCH 1:* ") && !strings.Contains(strings.ToUpper(c), "CHANGEDSINCE") {
			n++
		}
	}
	return n
}

// unchangedCost is what a login to an unchanged mailbox may send.
func (ce *cacheEnv) unchangedCost() []string {
	if ce.plain {
		// The hidden set, which no SELECT value reveals without CONDSTORE.
		return []string{"LOGIN", "SELECT", "UID SEARCH", "LOGOUT"}
	}
	return []string{"LOGIN", "SELECT", "LOGOUT"}
}

func appendN(t *testing.T, e *dovecotEnv, user, mailbox string, from, to int) []imap.UID {
	t.Helper()
	var uids []imap.UID
	for i := from; i <= to; i++ {
		uids = append(uids, e.d.Append(t, user, mailbox, testMessage(subject(i%10)+strings.Repeat("x", i), i)))
	}
	return uids
}

func TestDovecotCache(t *testing.T) {
	e := startDovecot(t)
	for _, mode := range []struct {
		name  string
		plain bool
	}{{"CONDSTORE", false}, {"without CONDSTORE", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Run("unchanged mailbox costs LOGIN, SELECT, LOGOUT", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				appendN(t, e, user, "INBOX", 1, 3)
				e.d.Append(t, user, "INBOX", testMessage("hidden", 1), imap.Flag(policy.DeletedKeyword))
				if cmds := ce.check(t, user, 3); fullListings(cmds) != 1 {
					t.Errorf("first login sent %q; want one full listing", cmds)
				}
				hits, _ := ce.listings.Stats()
				for range 2 {
					if cmds := ce.check(t, user, 3); !slices.Equal(verbs(cmds), ce.unchangedCost()) {
						t.Errorf("login to an unchanged mailbox sent %q; want only %v", cmds, ce.unchangedCost())
					}
				}
				if h, _ := ce.listings.Stats(); h != hits+2 {
					t.Errorf("cache hits %d -> %d, want +2", hits, h)
				}
			})

			t.Run("new mail is fetched alone", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				appendN(t, e, user, "INBOX", 1, 3)
				ce.check(t, user, 3)
				appendN(t, e, user, "INBOX", 4, 5)
				cmds := ce.check(t, user, 5)
				if fullListings(cmds) != 0 || !slices.Contains(verbs(cmds), "UID FETCH") {
					t.Errorf("after new mail sent %q; want an incremental UID FETCH only", cmds)
				}
				if ce.plain && !slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "UID FETCH 4:* ") }) {
					t.Errorf("sent %q; want UID FETCH <old UIDNEXT>:*", cmds)
				}
			})

			t.Run("foreign expunge", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				uids := appendN(t, e, user, "INBOX", 1, 4)
				ce.check(t, user, 4)
				e.d.Expunge(t, user, "INBOX", uids[1])
				if cmds := ce.check(t, user, 3); fullListings(cmds) != 1 {
					t.Errorf("after an expunge sent %q; want a full listing", cmds)
				}
			})

			t.Run("foreign expunge and append, same count", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				uids := appendN(t, e, user, "INBOX", 1, 4)
				ce.check(t, user, 4)
				e.d.Expunge(t, user, "INBOX", uids[0])
				appendN(t, e, user, "INBOX", 5, 5)
				ce.check(t, user, 4)
				// One gone, two new: the count grew, but not by the new ones.
				e.d.Expunge(t, user, "INBOX", uids[2])
				appendN(t, e, user, "INBOX", 6, 7)
				ce.check(t, user, 5)
			})

			t.Run("UIDVALIDITY changed: mailbox recreated", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				ce.mailbox = "Work"
				user := e.user(t)
				appendN(t, e, user, "Work", 1, 2)
				ce.check(t, user, 2)
				old := e.d.UIDValidity(t, user, "Work")
				c := e.d.Client(t, user)
				if err := c.Delete("Work").Wait(); err != nil {
					t.Fatal(err)
				}
				c.Logout().Wait()
				// Same UIDs, same count, other messages.
				appendN(t, e, user, "Work", 3, 4)
				if v := e.d.UIDValidity(t, user, "Work"); v == old {
					t.Skipf("Dovecot reused UIDVALIDITY %d", v)
				}
				ce.check(t, user, 2)
			})

			t.Run("UIDVALIDITY changed in place", func(t *testing.T) {
				checkGoroutines(t)
				doveadm := testenv.RequireTool(t, "doveadm")
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				appendN(t, e, user, "INBOX", 1, 2)
				ce.check(t, user, 2)
				v := e.d.UIDValidity(t, user, "INBOX")
				setUIDValidity(t, e, doveadm, user, v+1000)
				if cmds := ce.check(t, user, 2); fullListings(cmds) != 1 {
					t.Errorf("after a UIDVALIDITY change sent %q; want a full listing", cmds)
				}
			})

			t.Run("hidden and shown again by another IMAP session", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				uids := appendN(t, e, user, "INBOX", 1, 3)
				ce.check(t, user, 3)
				e.d.SetFlags(t, user, "INBOX", uids[1], imap.Flag(policy.DeletedKeyword))
				ce.check(t, user, 2)
				removeFlag(t, e, user, "INBOX", uids[1], imap.Flag(policy.DeletedKeyword))
				ce.check(t, user, 3)
			})

			t.Run("hidden by another popbridge with delete-action flag", func(t *testing.T) {
				checkGoroutines(t)
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				appendN(t, e, user, "INBOX", 1, 3)
				ce.check(t, user, 3)
				// Another replica: its own cache, the flag action.
				other := newCacheEnv(t, e, mode.plain)
				m := e.login(t, other.cached(t, func(o *Options) { o.Policy.Action = policy.Action{Kind: policy.Flag} }), user)
				if err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{2}}); err != nil {
					t.Fatal(err)
				}
				m.Close()
				ce.check(t, user, 2)
			})

			t.Run("own QUIT update", func(t *testing.T) {
				for _, tc := range []struct {
					name   string
					policy policy.Policy
					marks  pop3server.Marks
					left   int
				}{
					{"expunge", policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Expunge}, MarkSeen: true},
						pop3server.Marks{Deleted: []int{1, 3}, Retrieved: []int{2}}, 2},
					{"flag", policy.Policy{Delete: policy.Honor, Action: policy.Action{Kind: policy.Flag}},
						pop3server.Marks{Deleted: []int{1}}, 3},
					{"move", policy.Policy{Delete: policy.OnDownload, Action: policy.Action{Kind: policy.Move, Mailbox: "Trash"}},
						pop3server.Marks{Retrieved: []int{2, 4}}, 2},
					{"seen only", policy.Policy{Delete: policy.Leave, MarkSeen: true},
						pop3server.Marks{Deleted: []int{1}, Retrieved: []int{1, 2}}, 4},
				} {
					t.Run(tc.name, func(t *testing.T) {
						checkGoroutines(t)
						ce := newCacheEnv(t, e, mode.plain)
						user := e.user(t)
						appendN(t, e, user, "INBOX", 1, 4)
						ce.check(t, user, 4)
						m := e.login(t, ce.cached(t, func(o *Options) { o.Policy = tc.policy }), user)
						if err := m.Update(context.Background(), tc.marks); err != nil {
							t.Fatal(err)
						}
						m.Close()
						// The entry was replaced by the known result, not
						// dropped: no full listing, and with it the
						// listing is still exact.
						if cmds := ce.check(t, user, tc.left); fullListings(cmds) != 0 {
							t.Errorf("after our own update sent %q; want no full listing", cmds)
						}
						// A further change by someone else is still seen.
						appendN(t, e, user, "INBOX", 5, 5)
						ce.check(t, user, tc.left+1)
					})
				}
			})

			t.Run("failed update drops the entry", func(t *testing.T) {
				checkGoroutines(t)
				doveadm := testenv.RequireTool(t, "doveadm")
				ce := newCacheEnv(t, e, mode.plain)
				user := e.user(t)
				appendN(t, e, user, "INBOX", 1, 2)
				ce.check(t, user, 2)
				m := e.login(t, ce.cached(t), user)
				setUIDValidity(t, e, doveadm, user, m.uidValidity+1000)
				err := m.Update(context.Background(), pop3server.Marks{Deleted: []int{1}})
				wantCode(t, err, pop3server.ErrUpdateFailed)
				m.Close()
				if _, ok := ce.listings.Get(m.key); ok {
					t.Error("entry survived a failed update")
				}
				ce.check(t, user, 2)
			})
		})
	}
}

// TestDovecotCacheUsers: two users with the same mailbox name and the same
// UIDVALIDITY on the same upstream never see each other's listing.
func TestDovecotCacheUsers(t *testing.T) {
	checkGoroutines(t)
	doveadm := testenv.RequireTool(t, "doveadm")
	e := startDovecot(t)
	ce := newCacheEnv(t, e, false)
	a, b := e.user(t), e.user(t)
	appendN(t, e, a, "INBOX", 1, 3)
	appendN(t, e, b, "INBOX", 11, 13) // same UIDs 1..3, other sizes
	b3 := e.d.Append(t, b, "INBOX", testMessage("b hidden", 1), imap.Flag(policy.DeletedKeyword))
	va := e.d.UIDValidity(t, a, "INBOX")
	setUIDValidity(t, e, doveadm, b, va)
	if vb := e.d.UIDValidity(t, b, "INBOX"); vb != va {
		t.Fatalf("UIDVALIDITY %d and %d; want them equal", va, vb)
	}
	ce.check(t, a, 3)
	if cmds := ce.check(t, b, 3); fullListings(cmds) != 1 {
		t.Errorf("first login of %s sent %q; want a full listing of its own", b, cmds)
	}
	if ce.listings.Len() != 2 {
		t.Errorf("%d cache entries, want one per user", ce.listings.Len())
	}
	// Still apart once both are cached, and after B's mailbox changes.
	ce.check(t, a, 3)
	removeFlag(t, e, b, "INBOX", b3, imap.Flag(policy.DeletedKeyword))
	ce.check(t, b, 4)
	ce.check(t, a, 3)
}

func setUIDValidity(t *testing.T, e *dovecotEnv, doveadm, user string, v uint32) {
	t.Helper()
	out, err := exec.Command(doveadm, "-c", filepath.Join(e.d.Dir, "dovecot.conf"),
		"mailbox", "update", "-u", user, "--uid-validity", strconv.Itoa(int(v)), "INBOX").CombinedOutput()
	if err != nil {
		t.Fatalf("doveadm: %v\n%s", err, out)
	}
}

// removeFlag takes flag off message uid, as another IMAP client would.
func removeFlag(t *testing.T, e *dovecotEnv, user, mailbox string, uid imap.UID, flag imap.Flag) {
	t.Helper()
	c := e.d.Client(t, user)
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{flag}}
	if err := c.Store(imap.UIDSetNum(uid), store, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}
