package upstream

import (
	"context"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
)

// TestDovecotLeanTraffic pins what a session sends upstream, through a
// recording proxy: one LOGIN and no other authentication; TOP n 0 fetches
// the header alone, TOP n k the header and one text chunk in one command, TOP past the
// end and RETR the message whole, each once; a cached login fetches no
// listing; QUIT without changes sends no update.
func TestDovecotLeanTraffic(t *testing.T) {
	checkGoroutines(t)
	e := startDovecot(t)
	user := e.user(t)
	for i := 1; i <= 3; i++ {
		e.d.Append(t, user, "INBOX", testMessage(subject(i), 40))
	}
	proxy := startRecordingProxy(t, e.d.IMAPAddr)
	l, err := cache.NewListings(10)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, proxy.url(), func(o *Options) { o.Cache = l; o.Policy = policy.Policy{Delete: policy.Honor} })
	e.login(t, b, user).Close() // fills the cache
	proxy.take()

	m := e.login(t, b, user)
	if cmds := proxy.take(); strings.Join(verbs(cmds), " ") != "LOGIN SELECT" {
		t.Errorf("cached login sent %q", cmds)
	}
	ctx := context.Background()
	for _, step := range []struct {
		name string
		open func() (pop3server.Body, error)
		want []string // the FETCH items, in order
	}{
		{"TOP 1 0", func() (pop3server.Body, error) { return m.Top(ctx, 1, 0) }, []string{"BODY.PEEK[HEADER]"}},
		{"TOP 2 3", func() (pop3server.Body, error) { return m.Top(ctx, 2, 3) }, []string{"BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.4096>"}},
		{"TOP 3 99999999", func() (pop3server.Body, error) { return m.Top(ctx, 3, 99999999) }, []string{"BODY.PEEK[]"}},
		{"RETR 1", func() (pop3server.Body, error) { return m.Retrieve(ctx, 1) }, []string{"BODY.PEEK[]"}},
	} {
		body, err := step.open()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		readAll(t, body)
		var items []string
		for _, c := range proxy.take() {
			i := strings.Index(c, "BODY.PEEK[")
			if !strings.HasPrefix(c, "UID FETCH ") || i < 0 {
				t.Errorf("%s sent %q", step.name, c)
				continue
			}
			items = append(items, strings.TrimSuffix(c[i:], ")"))
		}
		if strings.Join(items, " ") != strings.Join(step.want, " ") {
			t.Errorf("%s fetched %q, want %q", step.name, items, step.want)
		}
	}
	if err := m.Update(ctx, pop3server.Marks{}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if cmds := proxy.take(); strings.Join(verbs(cmds), " ") != "LOGOUT" {
		t.Errorf("QUIT with nothing to apply sent %q", cmds)
	}
	// The whole session, as the POP3 server sees it, logged in once.
	m = e.login(t, b, user)
	m.Close()
	logins := 0
	for _, v := range verbs(proxy.take()) {
		if v == "LOGIN" || v == "AUTHENTICATE" {
			logins++
		}
	}
	if logins != 1 {
		t.Errorf("%d authentications for one session, want 1", logins)
	}
}
