package bridge

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// newFromArgs assembles a bridge from command-line arguments (so that
// --store counts as given), without serving it.
func newFromArgs(t *testing.T, args ...string) (*Bridge, error) {
	t.Helper()
	cfg, err := config.Load(append([]string{"--upstream", "imap+insecure://127.0.0.1:1", "--listen", "127.0.0.1:0", "--log-level", "disabled"}, args...),
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, Options{Logger: zerolog.Nop()})
	if err == nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}

// TestStoreLazyByDefault: without --store the bridge has a store for the
// features that need one, but creates no file until one uses it, and
// /readyz does not depend on it.
func TestStoreLazyByDefault(t *testing.T) {
	dir := t.TempDir()
	b, err := newFromArgs(t, "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.store == nil || b.store.Opened() || b.Ready() != nil {
		t.Fatalf("store %v opened %v ready %v", b.store, b.store.Opened(), b.Ready())
	}
	if _, err := os.Stat(filepath.Join(dir, "popbridge.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a bridge using no state created its file (%v)", err)
	}
	if err := b.store.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "popbridge.db")); err != nil {
		t.Fatalf("no file after the first use: %v", err)
	}
}

func TestStoreNone(t *testing.T) {
	b, err := newFromArgs(t, "--store", "none")
	if err != nil {
		t.Fatal(err)
	}
	if b.store != nil || b.Ready() != nil {
		t.Fatalf("--store none: store %v, ready %v", b.store, b.Ready())
	}
}

// TestStoreExplicitOpensAtStart: an explicit --store is opened by New;
// one that cannot be opened is a one-line configuration error naming the
// flag.
func TestStoreExplicitOpensAtStart(t *testing.T) {
	dir := t.TempDir()
	b, err := newFromArgs(t, "--store", "sqlite:state.db", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !b.store.Opened() || b.Ready() != nil {
		t.Fatalf("opened %v, ready %v", b.store.Opened(), b.Ready())
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Fatal(err)
	}

	_, err = newFromArgs(t, "--store", "sqlite:state.db", "--data-dir", filepath.Join(dir, "missing"))
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "--store: store: open ") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("store that cannot be opened: %v, want a one-line *ConfigError naming --store", err)
	}
}

// TestReadyFollowsStore: /readyz fails while a PostgreSQL store the
// configuration needs is down, and recovers with it, the bridge running
// on.
func TestReadyFollowsStore(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	b, err := newFromArgs(t, "--store", url+"&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err != nil {
		t.Fatal(err)
	}
	pg.Kill()
	// Down at startup: one line naming the flag, no password.
	_, err = newFromArgs(t, "--store", strings.Replace(url, "popbridge@", "popbridge:hunter2@", 1)+"&connect_timeout=2")
	if err == nil || !strings.HasPrefix(err.Error(), "--store: store: open postgres://popbridge:xxxxx@") ||
		strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("PostgreSQL down at startup: %v", err)
	}
	waitFor(t, "readyz to fail", func() bool {
		err := b.Ready()
		return err != nil && strings.Contains(err.Error(), "state store unavailable")
	})
	pg.Start(t)
	waitFor(t, "readyz to recover", func() bool { return b.Ready() == nil })
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// popSession is a raw POP3 connection for the lock test.
type popSession struct {
	c net.Conn
	r *bufio.Reader
}

// loginHeld logs in as the demo user and returns the PASS answer with the
// session still open.
func loginHeld(t *testing.T, addr string) (*popSession, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &popSession{c: c, r: bufio.NewReader(c)}
	var last string
	for _, cmd := range []string{"", "USER " + demo.Username, "PASS " + demo.Password} {
		if cmd != "" {
			if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		if last, err = s.r.ReadString('\n'); err != nil {
			t.Fatalf("after %q: %v", cmd, err)
		}
	}
	return s, strings.TrimSpace(last)
}

// TestLockSessionAcrossBridges: two bridges sharing a PostgreSQL store
// with --lock-session let one session per user in at a time, whichever
// bridge it reaches; QUIT on one frees the user for the other.
func TestLockSessionAcrossBridges(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	d, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var bridges []*Bridge
	for range 2 {
		b, err := newFromArgs(t, "--upstream", "imap+insecure://"+d.Addr, "--plaintext-auth", "always",
			"--lock-session", "--store", url)
		if err != nil {
			t.Fatal(err)
		}
		served := b.Start()
		t.Cleanup(func() { b.Close(); <-served })
		bridges = append(bridges, b)
	}
	first, answer := loginHeld(t, bridges[0].Addrs().POP3)
	if !strings.HasPrefix(answer, "+OK") {
		t.Fatalf("first login: %q", answer)
	}
	if _, answer := loginHeld(t, bridges[1].Addrs().POP3); !strings.HasPrefix(answer, "-ERR [IN-USE]") {
		t.Fatalf("second login on the other bridge: %q, want -ERR [IN-USE]", answer)
	}
	if _, err := first.c.Write([]byte("QUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := first.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("QUIT: %q %v", line, err)
	}
	// The lock is released when the session ends, just after its QUIT
	// answer: wait for the condition.
	waitFor(t, "the lock to be free on the other bridge", func() bool {
		s, answer := loginHeld(t, bridges[1].Addrs().POP3)
		s.c.Close()
		return strings.HasPrefix(answer, "+OK")
	})
}
