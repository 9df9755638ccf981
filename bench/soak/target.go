package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/bridge"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/reliability/soak"
	"github.com/popbridge/popbridge/upstream"
)

// popbridge is the system under test.
type popbridge interface {
	addr() string
	// sample measures goroutines, heap and open sessions.
	sample() (soak.Sample, error)
	close()
}

// inProcess is popbridge assembled by package bridge with cmd/popbridge's
// defaults, except the per-IP limit (every client is 127.0.0.1), the
// session limit and cleartext logins from anywhere.
type inProcess struct {
	b      *bridge.Bridge
	served <-chan error
}

func startInProcess(upstreamAddr string, clients int) (*inProcess, error) {
	cfg := config.Default()
	cfg.Upstream = &upstream.URL{Scheme: upstream.SchemeInsecure, Host: upstreamAddr}
	cfg.Listen = "127.0.0.1:0"
	cfg.PlaintextAuth = pop3server.PlaintextAlways
	cfg.MaxConnsPerIP = -1    // disabled: every client is 127.0.0.1
	cfg.MaxUserIPConns = -1   // and several clients share a user
	cfg.MaxPreLoginConns = -1 // a burst of logins is not a flood
	cfg.MaxSessions = clients + 100
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: true}).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	b, err := bridge.New(cfg, bridge.Options{Logger: log, Version: "soak"})
	if err != nil {
		return nil, err
	}
	return &inProcess{b: b, served: b.Start()}, nil
}

func (p *inProcess) addr() string { return p.b.Addrs().POP3 }

func (p *inProcess) sample() (soak.Sample, error) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // the second empties sync.Pool's victim cache
	runtime.ReadMemStats(&ms)
	return soak.Sample{Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc, Sessions: p.b.ActiveSessions()}, nil
}

func (p *inProcess) close() {
	p.b.Close()
	<-p.served
}

// binary is the popbridge executable, measured through its /metrics.
type binary struct {
	cmd        *exec.Cmd
	pop3, http string
}

func startBinary(path, upstreamAddr string, clients int) (*binary, error) {
	ports, err := freeAddrs(2)
	if err != nil {
		return nil, err
	}
	b := &binary{pop3: ports[0], http: ports[1]}
	b.cmd = exec.Command(path,
		"--listen", b.pop3, "--admin-listen", b.http,
		"--upstream", "imap+insecure://"+upstreamAddr,
		"--plaintext-auth", "always",
		"--max-conns-per-ip", strconv.Itoa(clients+100),
		"--max-userip-conns", strconv.Itoa(clients+100),
		"--max-prelogin-conns", strconv.Itoa(clients+100),
		"--max-sessions", strconv.Itoa(clients+100),
		"--log-level", "warn")
	b.cmd.Stdout, b.cmd.Stderr = os.Stderr, os.Stderr
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := b.sample(); err == nil {
			return b, nil
		}
		if time.Now().After(deadline) {
			b.close()
			return nil, fmt.Errorf("%s did not come up on %s", path, b.http)
		}
	}
}

func (b *binary) addr() string { return b.pop3 }

// sample reads go_goroutines, go_memstats_heap_alloc_bytes (not after a
// GC: the binary cannot be asked for one) and popbridge_sessions_active.
func (b *binary) sample() (soak.Sample, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + b.http + "/metrics")
	if err != nil {
		return soak.Sample{}, err
	}
	defer resp.Body.Close()
	var s soak.Sample
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			s.Goroutines = int(v)
		case "go_memstats_heap_alloc_bytes":
			s.HeapBytes = uint64(v)
		case "popbridge_sessions_active":
			s.Sessions = int(v)
		}
	}
	return s, sc.Err()
}

func (b *binary) close() {
	b.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
}

// freeAddrs returns n loopback addresses with free ports.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, l.Addr().String())
		defer l.Close()
	}
	return addrs, nil
}
