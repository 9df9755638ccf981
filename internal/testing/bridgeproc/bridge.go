package bridgeproc

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
)

// Options shape one popbridge process. Only Args is commonly needed.
type Options struct {
	// Binary is the executable; "" means Binary(tb). See PlainBinary.
	Binary string
	// Args are the command-line flags.
	Args []string
	// Env is the whole environment; nil means PATH only, so that no
	// POPBRIDGE_* setting of the developer's changes what runs.
	Env []string
	// StartTimeout bounds the wait for "popbridge started"; it is raised
	// to MinWait, like every log wait.
	StartTimeout time.Duration
	// StopTimeout is how long the SIGTERM at the end of the test may take
	// before the process is killed; 0 means 15 s.
	StopTimeout time.Duration
	// KillAtCleanup kills the process at the end of the test instead of
	// stopping it with SIGTERM.
	KillAtCleanup bool
	// MustExitCleanly fails the test when the process exits before the
	// test ends, when it needs killing after the SIGTERM, or when it exits
	// with a non-zero status.
	MustExitCleanly bool
	// NoErrorLogs fails the test if, by its end, popbridge logged a line at
	// level error or above.
	NoErrorLogs bool
	// StrictJSON fails the test, in WaitLog, CountLog and Entries, on a log
	// line that is not one JSON object: no input may break a line.
	StrictJSON bool
}

// Bridge is a running popbridge process.
type Bridge struct {
	// The listeners' addresses from the "popbridge started" line, "" for
	// one not listening.
	POP3, POP3S, Admin string
	// Started is the decoded "popbridge started" line.
	Started map[string]any

	tb     testing.TB
	o      Options
	cmd    *exec.Cmd
	stdout SyncBuffer
	exited chan struct{}
	err    error // cmd.Wait's result, once exited is closed
	status int   // exit status, once exited is closed

	mu      sync.Mutex
	lines   []string      // every stderr line
	changed chan struct{} // closed and replaced on every new line
}

// Start runs popbridge with o and waits for its "popbridge started" line.
// The process is stopped when the test ends (see Options), and its log is
// dumped if the test failed.
func Start(tb testing.TB, o Options) *Bridge {
	tb.Helper()
	bin := o.Binary
	if bin == "" {
		bin = Binary(tb)
	}
	b := &Bridge{tb: tb, o: o, exited: make(chan struct{}), changed: make(chan struct{})}
	b.cmd = exec.Command(bin, o.Args...)
	b.cmd.Env = o.Env
	if b.cmd.Env == nil {
		b.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	// A test binary killed on a timeout must not leave the bridge behind.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b.cmd.Stdout = &b.stdout
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		tb.Fatalf("popbridge: %v", err)
	}
	if err := b.cmd.Start(); err != nil {
		tb.Fatalf("starting popbridge: %v", err)
	}
	go func() {
		b.readLog(stderr) // Wait closes the pipe: read it all first
		b.err = b.cmd.Wait()
		b.status = b.cmd.ProcessState.ExitCode()
		close(b.exited)
	}()
	tb.Cleanup(func() {
		b.cleanup()
		if tb.Failed() {
			tb.Logf("popbridge %s\nlog:\n%s", strings.Join(o.Args, " "), b.LogText())
		}
	})

	timeout := max(o.StartTimeout, MinWait) // a hang guard (see WaitEntry)
	started := b.WaitEntry(timeout, func(e map[string]any) bool { return e["message"] == "popbridge started" })
	if started == nil {
		if b.Exited() {
			tb.Fatalf("popbridge exited with status %d before starting", b.status)
		}
		tb.Fatalf("popbridge: no \"popbridge started\" line within %v", timeout)
	}
	b.Started = started
	b.POP3, _ = started["listen"].(string)
	b.POP3S, _ = started["listen_tls"].(string)
	b.Admin, _ = started["admin"].(string)
	return b
}

// readLog collects stderr line by line, however long a line is.
func (b *Bridge) readLog(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			b.mu.Lock()
			b.lines = append(b.lines, strings.TrimSuffix(line, "\n"))
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (b *Bridge) cleanup() {
	tb := b.tb
	if b.o.MustExitCleanly && b.Exited() {
		tb.Errorf("popbridge exited before the test ended: %v", b.err)
	} else if b.o.KillAtCleanup {
		b.cmd.Process.Kill()
		<-b.exited
	} else if !b.Exited() {
		timeout := b.o.StopTimeout
		if timeout == 0 {
			timeout = 15 * time.Second
		}
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
			if b.o.MustExitCleanly && b.err != nil {
				tb.Errorf("popbridge: exit after SIGTERM: %v", b.err)
			}
		case <-time.After(timeout):
			b.cmd.Process.Kill()
			<-b.exited
			if b.o.MustExitCleanly {
				tb.Errorf("popbridge: still running %v after SIGTERM; killed", timeout)
			}
		}
	}
	if b.o.NoErrorLogs {
		b.checkNoErrors()
	}
}

// checkNoErrors fails the test for every line logged at level error or
// above; warnings are shown with -v.
func (b *Bridge) checkNoErrors() {
	for _, e := range b.decode(false) {
		switch e["level"] {
		case "error", "fatal", "panic":
			b.tb.Errorf("popbridge logged at level %v: %v", e["level"], e)
		case "warn":
			if testing.Verbose() {
				b.tb.Logf("popbridge warning: %v", e)
			}
		}
	}
}

// Pid is the process id.
func (b *Bridge) Pid() int { return b.cmd.Process.Pid }

// Stdout returns what the process wrote to its standard output so far.
func (b *Bridge) Stdout() string { return b.stdout.String() }

// Lines returns the log (stderr) so far, one line each.
func (b *Bridge) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

// LogText returns the log so far.
func (b *Bridge) LogText() string { return strings.Join(b.Lines(), "\n") }

// Entries returns the log lines that are JSON objects, decoded; with
// Options.StrictJSON any other line fails the test.
func (b *Bridge) Entries() []map[string]any {
	b.tb.Helper()
	return b.decode(b.o.StrictJSON)
}

func (b *Bridge) decode(strict bool) []map[string]any {
	b.tb.Helper()
	var out []map[string]any
	for _, line := range b.Lines() {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			if strict {
				b.tb.Fatalf("log line is not one JSON object (%v): %q", err, line)
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// Matches reports whether every field in want is in m, compared as text
// (fmt.Sprint of the decoded value).
func Matches(m map[string]any, want map[string]string) bool {
	for k, v := range want {
		if fmt.Sprint(m[k]) != v {
			return false
		}
	}
	return true
}

// WaitEntry returns the first log entry for which match is true, waiting
// up to timeout for it; nil if none came in time or the process exited
// without one.
//
// The timeout only keeps a test from hanging: it is raised to at least
// MinWait, since a loaded CI machine can take longer than a caller's guess.
// So WaitEntry cannot show that a line does not come; wait for a later
// line instead (a barrier), then look.
func (b *Bridge) WaitEntry(timeout time.Duration, match func(map[string]any) bool) map[string]any {
	b.tb.Helper()
	timeout = max(timeout, MinWait)
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		changed := b.changed
		b.mu.Unlock()
		exited := b.Exited() // before the look: lines read by then are all there
		for _, e := range b.Entries() {
			if match(e) {
				return e
			}
		}
		if exited {
			return nil
		}
		select {
		case <-changed:
		case <-b.exited:
		case <-deadline:
			return nil
		}
	}
}

// MinWait is the least WaitEntry and WaitLog wait for a line that must
// come (see WaitEntry).
const MinWait = 2 * time.Minute

// WaitLog waits up to timeout for a log line with the wanted fields (see
// Matches) and returns it; the test fails if none comes.
func (b *Bridge) WaitLog(want map[string]string, timeout time.Duration) map[string]any {
	b.tb.Helper()
	e := b.WaitEntry(timeout, func(e map[string]any) bool { return Matches(e, want) })
	if e == nil {
		if b.Exited() {
			b.tb.Fatalf("popbridge exited waiting for log %v; log:\n%s", want, tail(b.LogText(), 30))
		}
		b.tb.Fatalf("no log line %v within %v; log:\n%s", want, timeout, tail(b.LogText(), 30))
	}
	return e
}

// CountLog counts the log lines with the wanted fields.
func (b *Bridge) CountLog(want map[string]string) int {
	b.tb.Helper()
	n := 0
	for _, e := range b.Entries() {
		if Matches(e, want) {
			n++
		}
	}
	return n
}

// Signal sends sig to the process.
func (b *Bridge) Signal(sig syscall.Signal) {
	b.tb.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil {
		b.tb.Fatalf("signal: %v", err)
	}
}

// Exited reports whether the process has exited (and its log is read).
func (b *Bridge) Exited() bool {
	select {
	case <-b.exited:
		return true
	default:
		return false
	}
}

// Done is closed once the process has exited and its log is read.
func (b *Bridge) Done() <-chan struct{} { return b.exited }

// Wait waits up to timeout for the process to exit and returns its exit
// status (-1 when killed by a signal); the test fails if it does not exit.
func (b *Bridge) Wait(timeout time.Duration) int {
	b.tb.Helper()
	select {
	case <-b.exited:
		return b.status
	case <-time.After(timeout):
		b.tb.Fatalf("popbridge still running after %v", timeout)
		return -1
	}
}

// Stop sends SIGTERM and waits up to timeout, then kills the process. It
// returns cmd.Wait's error.
func (b *Bridge) Stop(timeout time.Duration) error {
	if !b.Exited() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(timeout):
			b.cmd.Process.Kill()
			<-b.exited
		}
	}
	return b.err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: it collects a
// process's output, or a log written from many goroutines, while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail returns the last n lines written.
func (s *SyncBuffer) Tail(n int) string { return tail(s.String(), n) }
