package upstream

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// startMemUsers is an imapmemserver with one account per name (password
// name+"-pw"). imapmemserver gives every mailbox UIDVALIDITY 1 and has no
// CONDSTORE: the cache's worst case for isolation and revalidation.
func startMemUsers(t *testing.T, names ...string) (string, map[string]*imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	users := map[string]*imapmemserver.User{}
	for _, n := range names {
		u := imapmemserver.NewUser(n, n+"-pw")
		if err := u.Create("INBOX", nil); err != nil {
			t.Fatal(err)
		}
		mem.AddUser(u)
		users[n] = u
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         capsFull,
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), users
}

func memLogin(t *testing.T, b *Backend, user string) []pop3server.MessageInfo {
	t.Helper()
	mb, err := b.Login(context.Background(), testConn, user, user+"-pw")
	if err != nil {
		t.Fatalf("Login %s: %v", user, err)
	}
	defer mb.Close()
	return mb.Messages()
}

// TestCacheIsolatesUsers: two users with the same mailbox name and the
// same UIDVALIDITY on one upstream, the same UIDs but other messages:
// neither is ever served the other's listing, and a hidden message is
// seen without CONDSTORE.
func TestCacheIsolatesUsers(t *testing.T) {
	checkGoroutines(t)
	addr, users := startMemUsers(t, "ann", "ben")
	add := func(u *imapmemserver.User, subject string, lines int) {
		t.Helper()
		if _, err := u.Append("INBOX", literal{bytes.NewReader(testMessage(subject, lines))}, &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	add(users["ann"], "a1", 1)
	add(users["ann"], "a2", 2)
	add(users["ben"], "b1", 10)
	add(users["ben"], "b2", 20)
	add(users["ben"], "b3", 30)

	l, err := cache.NewListings(10)
	if err != nil {
		t.Fatal(err)
	}
	u := &URL{Scheme: SchemeInsecure, Host: addr}
	cached := newBackend(t, u, func(o *Options) { o.Cache = l })
	fresh := newBackend(t, u)
	check := func(user string, want int) {
		t.Helper()
		got, oracle := memLogin(t, cached, user), memLogin(t, fresh, user)
		if !slices.Equal(got, oracle) || len(got) != want {
			t.Errorf("%s through the cache: %v; uncached: %v (want %d messages)", user, got, oracle, want)
		}
	}
	check("ann", 2)
	check("ben", 3)
	check("ann", 2)
	check("ben", 3)
	if l.Len() != 2 {
		t.Errorf("%d cache entries, want one per user", l.Len())
	}
	if hits, _ := l.Stats(); hits != 2 {
		t.Errorf("%d cache hits, want 2", hits)
	}

	// Another session hides ben's second message.
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("ben", "ben-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{policy.DeletedKeyword}}
	if err := c.Store(imap.UIDSetNum(2), store, nil).Close(); err != nil {
		t.Fatal(err)
	}
	check("ben", 2)
	check("ann", 2)
}
