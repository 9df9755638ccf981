package bridge

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/testing/faultnet"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// start assembles a bridge for the demo IMAP server behind a relay the
// test can take down.
func start(t *testing.T, adjust func(*config.Config)) (*Bridge, *faultnet.Relay) {
	t.Helper()
	d, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	relay, err := faultnet.Listen(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	cfg := config.Default()
	cfg.Upstream = &upstream.URL{Scheme: upstream.SchemeInsecure, Host: relay.Addr()}
	cfg.Listen = "127.0.0.1:0"
	cfg.PlaintextAuth = pop3server.PlaintextAlways
	if adjust != nil {
		adjust(cfg)
	}
	b, err := New(cfg, Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	served := b.Start()
	t.Cleanup(func() {
		b.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b, relay
}

// login logs in as the demo user and returns the PASS answer.
func login(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	var last string
	for _, cmd := range []string{"", "USER " + demo.Username, "PASS " + demo.Password} {
		if cmd != "" {
			if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		if last, err = r.ReadString('\n'); err != nil {
			t.Fatalf("after %q: %v", cmd, err)
		}
	}
	c.Write([]byte("QUIT\r\n"))
	return strings.TrimSpace(last)
}

// TestReadyFollowsUpstreamHealth: Ready fails after
// --ready-upstream-failures logins could not reach the upstream, recovers
// through its probe without any login once the upstream is back, and
// fails for good once draining.
func TestReadyFollowsUpstreamHealth(t *testing.T) {
	b, relay := start(t, func(c *config.Config) { c.ReadyUpstreamFailures = 2 })
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready before anything: %v", err)
	}
	relay.Down()
	for range 2 {
		if r := login(t, b.Addrs().POP3); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
			t.Fatalf("login with the upstream down: %q", r)
		}
	}
	err := b.Ready()
	if err == nil || !strings.Contains(err.Error(), "upstream unreachable: 2 connection attempts failed in a row") {
		t.Fatalf("Ready after 2 failed connects: %v", err)
	}
	if err := relay.Up(); err != nil {
		t.Fatal(err)
	}
	b.ready.interval = 0 // probe at once
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready once the upstream is back: %v", err)
	}
	if r := login(t, b.Addrs().POP3); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login with the upstream back: %q", r)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); !errors.Is(err, errDraining) {
		t.Fatalf("Ready after Shutdown: %v", err)
	}
}

// TestReadyIgnoresUpstreamByDefault: without --ready-upstream-failures
// an unreachable upstream leaves the replica ready.
func TestReadyIgnoresUpstreamByDefault(t *testing.T) {
	b, relay := start(t, nil)
	relay.Down()
	for range 3 {
		login(t, b.Addrs().POP3)
	}
	if err := b.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}
