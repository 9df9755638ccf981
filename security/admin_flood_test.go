package security

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// fdCount is how many file descriptors the process has open.
func fdCount(t *testing.T, b *bridgeproc.Bridge) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Whoever reaches the admin port cannot starve the POP3 side: 150
// connections sending unfinished 1 MB headers and then 1,100 idle
// connections leave popbridge's memory and file descriptors bounded, and a
// logged-in POP3 session and new POP3 logins are served throughout. Before
// the admin limits, the first flood took RSS from 19 to 352 MB and the
// second exhausted the file descriptors. popbridge logs its open-file
// limit at start.
func TestAdminFloodsDoNotStarvePOP3(t *testing.T) {
	b := startBridge(t, "--demo", "--admin-listen", "127.0.0.1:0")
	if b.WaitEntry(5*time.Second, func(e map[string]any) bool {
		m, _ := e["message"].(string)
		return strings.HasPrefix(m, "open-file limit") && e["soft"] != nil && e["soft"] == e["hard"]
	}) == nil {
		t.Error("no log line saying the open-file limit was raised to the hard limit")
	}
	session := dialPOP3(t, b.POP3)
	session.Login("demo", "demo")
	rssBefore := memKiB(t, b, "VmRSS")
	fdBefore := fdCount(t, b)

	var mu sync.Mutex
	var flood []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range flood {
			c.Close()
		}
	}()
	keep := func(c net.Conn) {
		mu.Lock()
		flood = append(flood, c)
		mu.Unlock()
	}

	// Header flood: each connection sends a megabyte of header, never
	// ending it.
	var wg sync.WaitGroup
	big := "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Fill: " + strings.Repeat("a", 1<<20)
	for range 150 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", b.Admin, 5*time.Second)
			if err != nil {
				return
			}
			keep(c)
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, big) // blocks once the server stops reading
		}()
	}
	wg.Wait()
	popStillServed(t, b, session)
	rssHeaders := memKiB(t, b, "VmRSS")

	// Connection flood: idle connections, as many as a scanner opens.
	for range 1100 {
		c, err := net.DialTimeout("tcp", b.Admin, 2*time.Second)
		if err != nil {
			continue // the accept queue is full: that is the defence
		}
		keep(c)
	}
	fdFlood := fdCount(t, b)
	popStillServed(t, b, session)
	t.Logf("RSS %d kB before, %d kB after the header flood; fds %d before, %d during the connection flood",
		rssBefore, rssHeaders, fdBefore, fdFlood)

	if grew := rssHeaders - rssBefore; grew > 64<<10 {
		t.Errorf("the header flood grew RSS by %d kB (from %d kB)", grew, rssBefore)
	}
	if fdFlood > fdBefore+100 {
		t.Errorf("the connection flood took popbridge from %d to %d file descriptors", fdBefore, fdFlood)
	}

	// Once the flood goes, the admin port answers again.
	mu.Lock()
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + b.Admin + "/livez")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/livez after the flood: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	session.Send("QUIT")
	session.Expect("+OK*")
}

// popStillServed checks the logged-in session and a new login.
func popStillServed(t *testing.T, b *bridgeproc.Bridge, session *pop3client.Client) {
	t.Helper()
	session.Send("STAT")
	session.Expect("+OK*")
	session.Send("RETR 1")
	session.Expect("+OK*")
	session.Multiline()
	c := dialPOP3(t, b.POP3)
	c.Login("demo", "demo")
	c.Send("LIST")
	c.Expect("+OK*")
	c.Multiline()
	c.Send("QUIT")
	c.Expect("+OK*")
}
