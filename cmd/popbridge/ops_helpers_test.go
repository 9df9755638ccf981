package main

// Helpers for the black-box operations tests: they build the real binary,
// run it on random loopback ports, talk POP3 and HTTP to it and read its
// JSON log lines, as an operator's tooling would.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

// opsBuild builds ./cmd/popbridge into a temporary directory. The build
// cache makes every call after the first a link only.
func opsBuild(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "popbridge")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// opsProc is a running popbridge.
type opsProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	POP3  string // from the "popbridge started" line
	POP3S string
	Admin string

	mu     sync.Mutex
	lines  []string // stderr, one JSON object a line
	exited chan struct{}
	status int // exit status, valid once exited is closed
}

// opsStart runs bin with args and waits for its "popbridge started" line.
// The process is killed when the test ends if it is still running.
func opsStart(t *testing.T, bin string, args ...string) *opsProc {
	t.Helper()
	p := &opsProc{t: t, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no POPBRIDGE_* from the caller
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "popbridge started" {
				started <- m
			}
		}
		err := p.cmd.Wait()
		p.status = p.cmd.ProcessState.ExitCode()
		if err != nil && p.status < 0 {
			p.status = -1
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("popbridge log:\n%s", strings.Join(p.Lines(), "\n"))
		}
	})
	select {
	case m := <-started:
		p.POP3, _ = m["listen"].(string)
		p.POP3S, _ = m["listen_tls"].(string)
		p.Admin, _ = m["admin"].(string)
	case <-p.exited:
		t.Fatalf("popbridge exited with status %d before starting:\n%s", p.status, strings.Join(p.Lines(), "\n"))
	case <-time.After(20 * time.Second):
		t.Fatalf("popbridge did not start:\n%s", strings.Join(p.Lines(), "\n"))
	}
	return p
}

// Lines returns the log so far.
func (p *opsProc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// WaitLog waits for a JSON log line whose fields include all of want
// (compared as text) and returns it decoded.
func (p *opsProc) WaitLog(want map[string]string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range p.Lines() {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) != nil {
				continue
			}
			if logMatches(m, want) {
				return m
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no log line with %v in:\n%s", want, strings.Join(p.Lines(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CountLog counts the log lines whose fields include all of want.
func (p *opsProc) CountLog(want map[string]string) int {
	n := 0
	for _, l := range p.Lines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && logMatches(m, want) {
			n++
		}
	}
	return n
}

func logMatches(m map[string]any, want map[string]string) bool {
	for k, v := range want {
		if fmt.Sprint(m[k]) != v {
			return false
		}
	}
	return true
}

// Signal sends sig to the process.
func (p *opsProc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal: %v", err)
	}
}

// Wait waits for the process to exit and returns its status.
func (p *opsProc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.status
	case <-time.After(timeout):
		p.t.Fatalf("popbridge still running after %v", timeout)
		return -1
	}
}

// get fetches an admin URL path and returns the status code and body.
func (p *opsProc) get(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.Admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape returns /metrics as series text (name{labels} exactly as
// exposed) -> value.
func (p *opsProc) scrape() map[string]float64 {
	p.t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		p.t.Fatalf("GET /metrics: %d %v", code, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			p.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// opsPOP3 is a line-level POP3 client that counts the octets it read.
type opsPOP3 struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int64 // octets read
}

// opsDial connects to addr; prefix (a PROXY header, say) is sent first.
func opsDial(t *testing.T, addr string, prefix []byte) *opsPOP3 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if len(prefix) > 0 {
		if _, err := conn.Write(prefix); err != nil {
			t.Fatal(err)
		}
	}
	c := &opsPOP3{t: t, conn: conn}
	c.r = newCountingReader(conn, &c.n)
	return c
}

func newCountingReader(r io.Reader, n *int64) *bufio.Reader {
	return bufio.NewReader(readCounter{r, n})
}

type readCounter struct {
	r io.Reader
	n *int64
}

func (r readCounter) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	*r.n += int64(n)
	return n, err
}

// line reads one line (without CRLF); io.EOF when the server closed.
func (c *opsPOP3) line() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		if s != "" && errors.Is(err, io.EOF) {
			return s, io.ErrUnexpectedEOF
		}
		return s, err
	}
	return strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r"), nil
}

// mustLine reads a line that must start with prefix.
func (c *opsPOP3) mustLine(prefix string) string {
	c.t.Helper()
	s, err := c.line()
	if err != nil || !strings.HasPrefix(s, prefix) {
		c.t.Fatalf("read %q (%v), want a line starting %q", s, err, prefix)
	}
	return s
}

// cmd sends a command and returns the first line of the reply.
func (c *opsPOP3) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	s, err := c.line()
	if err != nil {
		c.t.Fatalf("%s: reading reply: %v", line, err)
	}
	return s
}

func (c *opsPOP3) send(line string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("sending %q: %v", line, err)
	}
}

// ok sends a command that must be answered +OK.
func (c *opsPOP3) ok(line string) string {
	c.t.Helper()
	s := c.cmd(line)
	if !strings.HasPrefix(s, "+OK") {
		c.t.Fatalf("%s: %s", line, s)
	}
	return s
}

// multi reads a multi-line body up to the terminating dot, un-stuffed.
func (c *opsPOP3) multi() []byte {
	c.t.Helper()
	return c.readBody(-1)
}

// multiPrefix reads about the first n octets of a multi-line body,
// un-stuffed, leaving the rest (and the dot) unread.
func (c *opsPOP3) multiPrefix(n int) []byte {
	c.t.Helper()
	return c.readBody(n)
}

func (c *opsPOP3) readBody(limit int) []byte {
	c.t.Helper()
	var buf bytes.Buffer
	for limit < 0 || buf.Len() < limit {
		c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		s, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("multi-line body: %v after %d octets", err, buf.Len())
		}
		if s == ".\r\n" {
			return buf.Bytes()
		}
		buf.WriteString(strings.TrimPrefix(s, "."))
	}
	return buf.Bytes()
}

// closed reports whether the server closes the connection (EOF or reset)
// without sending anything more.
func (c *opsPOP3) closed() (bool, string) {
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, string(b)
	}
	return len(b) == 0, string(b)
}
