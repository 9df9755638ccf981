package main

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestOpsReadyzUpstreamFailures: with --ready-upstream-failures 2, two
// logins that cannot reach the upstream make /readyz 503 (while /livez
// stays 200), and once the upstream listens again the readiness probe
// finds it and /readyz recovers without any client traffic.
func TestOpsReadyzUpstreamFailures(t *testing.T) {
	upAddr := testenv.RefusedAddr(t)

	p := opsStart(t, bridgeproc.Binary(t), "--upstream", "imap+insecure://"+upAddr, "--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--ready-upstream-failures", "2", "--plaintext-auth", "always")
	readyz := func() int {
		code, _, err := p.Get("/readyz")
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz = %d before any failure, want 200", code)
	}
	c := opsDial(t, p.POP3, nil)
	c.MustLine("+OK")
	for i := 0; i < 2; i++ {
		c.OK("USER alice")
		c.CmdPrefix("PASS pw", "-ERR [SYS/TEMP]")
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d after 2 upstream connect failures, want 503", code)
	}
	if code, _, err := p.Get("/livez"); err != nil || code != http.StatusOK {
		t.Fatalf("/livez = %d %v with the upstream down, want 200", code, err)
	}

	back, err := net.Listen("tcp", upAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", upAddr, err)
	}
	defer back.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for readyz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 503 after the upstream came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
