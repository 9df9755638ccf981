package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv"
)

// startTimeout bounds how long the bridge may take to print its
// "popbridge started" line.
const startTimeout = 30 * time.Second

// Bridge is a running popbridge process.
type Bridge struct {
	Addr string // the POP3 listener, "127.0.0.1:port"

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's result once exited is closed

	mu      sync.Mutex
	lines   []string         // every stderr line, for the failure dump
	entries []map[string]any // the lines that parsed as JSON
	changed chan struct{}    // closed and replaced on every new line
}

// startBridge starts popbridge in front of d (no TLS upstream) listening on
// a free loopback port, with extra flags appended. It is stopped with
// SIGTERM when the test ends, and must then exit with status 0; if the test
// failed its log is dumped.
func startBridge(t testing.TB, d *testenv.Dovecot, extra ...string) *Bridge {
	t.Helper()
	args := append([]string{
		"--upstream", "imap+insecure://" + d.IMAPAddr,
		"--listen", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "debug",
	}, extra...)
	b := &Bridge{exited: make(chan struct{}), changed: make(chan struct{})}
	b.cmd = exec.Command(bridgeBin, args...)
	b.cmd.Env = cleanEnv()
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("bridge: %v", err)
	}
	var stdout bytes.Buffer
	b.cmd.Stdout = &stdout
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("bridge: start %s: %v", bridgeBin, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b.readLog(stderr)
	}()
	go func() {
		<-readDone // Wait closes the pipe: read it all first
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		b.stop(t)
		b.checkNoErrors(t)
		if t.Failed() {
			t.Logf("popbridge %s\nlog:\n%s", strings.Join(args, " "), b.logText())
		}
	})

	started := b.waitEntry(t, startTimeout, func(e map[string]any) bool {
		return e["message"] == "popbridge started"
	})
	if started == nil {
		t.Fatalf("bridge: no \"popbridge started\" line within %v", startTimeout)
	}
	addr, _ := started["listen"].(string)
	if addr == "" {
		t.Fatalf("bridge: \"popbridge started\" without a listen address: %v", started)
	}
	b.Addr = addr
	return b
}

// cleanEnv is the environment without POPBRIDGE_* variables, so a
// developer's settings cannot change what the tests run.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POPBRIDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// readLog collects stderr line by line.
func (b *Bridge) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			e = nil
		}
		b.mu.Lock()
		b.lines = append(b.lines, line)
		if e != nil {
			b.entries = append(b.entries, e)
		}
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// waitEntry returns the first log entry matching match, waiting up to
// timeout for it; nil if none came or the bridge exited.
func (b *Bridge) waitEntry(t testing.TB, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		b.mu.Lock()
		for ; seen < len(b.entries); seen++ {
			if match(b.entries[seen]) {
				e := b.entries[seen]
				b.mu.Unlock()
				return e
			}
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-b.exited:
			// Lines read before the exit are all in entries: one last look.
			b.mu.Lock()
			defer b.mu.Unlock()
			for ; seen < len(b.entries); seen++ {
				if match(b.entries[seen]) {
					return b.entries[seen]
				}
			}
			return nil
		case <-deadline:
			return nil
		}
	}
}

// waitSessionEnd waits for the bridge's "session end" line of the client
// connection whose local port is clientPort, and returns it. The bridge
// writes it after the session's Mailbox is closed, so whatever the session
// did (or did not do) upstream is done once it is logged.
func (b *Bridge) waitSessionEnd(t testing.TB, clientPort int) map[string]any {
	t.Helper()
	e := b.waitEntry(t, 30*time.Second, func(e map[string]any) bool {
		port, _ := e["client_port"].(float64)
		return e["event"] == "session_end" && int(port) == clientPort
	})
	if e == nil {
		t.Fatalf("bridge: no session end logged for client port %d", clientPort)
	}
	return e
}

// checkNoErrors fails the test if the bridge logged anything at level
// error or above: a recovered panic, a listener failure, an upstream that
// misbehaved. None of the e2e scenarios should cause one.
func (b *Bridge) checkNoErrors(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.entries {
		switch e["level"] {
		case "error", "fatal", "panic":
			t.Errorf("bridge logged at level %v: %v", e["level"], e)
		case "warn":
			if testing.Verbose() {
				t.Logf("bridge warning: %v", e)
			}
		}
	}
}

// logText returns everything the bridge wrote to stderr.
func (b *Bridge) logText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// stop sends SIGTERM and waits; a bridge that does not exit within 40 s
// (its drain timeout is 30 s) is killed and the test fails, as does a
// non-zero exit status.
func (b *Bridge) stop(t testing.TB) {
	select {
	case <-b.exited:
		t.Errorf("bridge exited before the test ended: %v", b.err)
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		if b.err != nil {
			t.Errorf("bridge: exit after SIGTERM: %v", b.err)
		}
	case <-time.After(40 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		t.Errorf("bridge: still running 40s after SIGTERM; killed")
	}
}

// url returns the pop3:// URL of the bridge for user and password, with
// path appended (e.g. "/1").
func (b *Bridge) url(user, pass, path string) string {
	return fmt.Sprintf("pop3://%s:%s@%s%s", user, pass, b.Addr, path)
}

// password is the password of every test user: a function of the name, so
// tests need not carry it around.
func password(user string) string { return "pw-" + user + "-secret" }

// startDovecot starts a Dovecot with the named users (password(name)),
// optionally with Dovecot's own POP3 server for comparisons.
func startDovecot(t testing.TB, pop3 bool, users ...string) *testenv.Dovecot {
	t.Helper()
	var us []testenv.User
	for _, u := range users {
		us = append(us, testenv.User{Name: u, Password: password(u)})
	}
	return testenv.StartDovecot(t, testenv.DovecotOptions{Users: us, POP3: pop3})
}
