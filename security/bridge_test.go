package security

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the popbridge binary TestMain builds once for all tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "popbridge-security-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "popbridge")
	build := exec.Command("go", "build", "-o", binPath, "github.com/popbridge/popbridge/cmd/popbridge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "security: building popbridge:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bridge is a running popbridge.
type bridge struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer // the JSON log
	stdout *syncBuffer
	exited chan struct{}

	POP3, POP3S, Admin string // bound addresses, "" when not listening
}

// startBridge runs popbridge with args (plus --listen 127.0.0.1:0 unless
// args set --listen) and waits for its "popbridge started" line. It is
// stopped with SIGTERM when the test ends.
func startBridge(t *testing.T, args ...string) *bridge {
	t.Helper()
	if !hasFlag(args, "--listen") {
		args = append([]string{"--listen", "127.0.0.1:0"}, args...)
	}
	b := &bridge{t: t, stderr: &syncBuffer{}, stdout: &syncBuffer{}, exited: make(chan struct{})}
	b.cmd = exec.Command(binPath, args...)
	b.cmd.Stdout, b.cmd.Stderr = b.stdout, b.stderr
	// Nothing from the developer's environment.
	b.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting popbridge: %v", err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("popbridge %s\nstderr:\n%s", strings.Join(args, " "), tail(b.stderr.String(), 40))
		}
	})
	started := b.waitLog(map[string]string{"message": "popbridge started"}, 15*time.Second)
	b.POP3, _ = started["listen"].(string)
	b.POP3S, _ = started["listen_tls"].(string)
	b.Admin, _ = started["admin"].(string)
	return b
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func (b *bridge) stop() {
	select {
	case <-b.exited:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
	}
}

// logLines returns every log line decoded; a line that is not a JSON
// object fails the test (a username must not be able to break one).
func (b *bridge) logLines() []map[string]any {
	b.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(b.stderr.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			b.t.Fatalf("log line is not one JSON object (%v): %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

func matches(m map[string]any, want map[string]string) bool {
	for k, v := range want {
		if fmt.Sprint(m[k]) != v {
			return false
		}
	}
	return true
}

// waitLog waits for a log line with the wanted fields and returns it.
func (b *bridge) waitLog(want map[string]string, timeout time.Duration) map[string]any {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range b.logLines() {
			if matches(m, want) {
				return m
			}
		}
		select {
		case <-b.exited:
			b.t.Fatalf("popbridge exited waiting for log %v; stderr:\n%s", want, tail(b.stderr.String(), 30))
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no log line %v within %v; stderr:\n%s", want, timeout, tail(b.stderr.String(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLog counts log lines with the wanted fields.
func (b *bridge) countLog(want map[string]string) int {
	n := 0
	for _, m := range b.logLines() {
		if matches(m, want) {
			n++
		}
	}
	return n
}

// memKiB reads a field such as VmRSS or VmHWM (peak RSS) of the process.
func (b *bridge) memKiB(field string) int {
	b.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		b.t.Fatalf("reading memory of popbridge: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.t.Fatalf("parsing %q: %v", s.Text(), err)
			}
			return n
		}
	}
	b.t.Fatalf("no %s in /proc status", field)
	return 0
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
