package upstream

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// recordingProxy sits between the backend and an IMAP server and records
// every command the backend sends, so tests can count upstream traffic.
type recordingProxy struct {
	addr string
	mu   sync.Mutex
	cmds []string // command lines without tags; LOGIN arguments dropped
}

func startRecordingProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c, target) })
		}
	})
	return p
}

func (p *recordingProxy) serve(c net.Conn, target string) {
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(c, s)
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			// Recorded before it is passed on, so it is in the record
			// by the time its answer arrives.
			p.record(line)
			if _, werr := io.WriteString(s, line); werr != nil {
				break
			}
		}
		if n, ok := literalAtEnd([]byte(strings.TrimRight(line, "\n"))); ok && n > 0 {
			// A literal argument (not sent by the backend today): pass
			// it on unrecorded.
			if _, err := io.CopyN(s, r, n); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	s.Close()
	<-done
}

func (p *recordingProxy) record(line string) {
	line = strings.TrimRight(line, "\r\n")
	_, cmd, ok := strings.Cut(line, " ")
	if !ok {
		return // a continuation (AUTHENTICATE), not a command
	}
	if strings.HasPrefix(strings.ToUpper(cmd), "LOGIN ") {
		cmd = "LOGIN"
	}
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	p.mu.Unlock()
}

// take returns the commands recorded since the last take.
func (p *recordingProxy) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.cmds
	p.cmds = nil
	return out
}

func (p *recordingProxy) url() *URL { return &URL{Scheme: SchemeInsecure, Host: p.addr} }

// verbs are the command names of cmds ("UID FETCH", "SELECT", ...).
func verbs(cmds []string) []string {
	var out []string
	for _, c := range cmds {
		f := strings.Fields(strings.ToUpper(c))
		switch {
		case len(f) == 0:
		case f[0] == "UID" && len(f) > 1:
			out = append(out, "UID "+f[1])
		default:
			out = append(out, f[0])
		}
	}
	return out
}
