package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL cluster for tests: initdb in a temporary
// directory, the server run as UnprivilegedUser (PostgreSQL refuses root)
// on a loopback port, trust authentication for the superuser "popbridge".
// Debian's postgresql package provides the binaries
// (/usr/lib/postgresql/VERSION/bin); ./scripts/test.sh installs it.
type Postgres struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string
	// Dir holds the cluster (data/) and the server's log.
	Dir string

	bin     string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	dbs     atomic.Int64
}

// postgresUser is the cluster's superuser; trust authentication, loopback
// only.
const postgresUser = "popbridge"

// PostgresBinDir returns the newest /usr/lib/postgresql/*/bin holding
// initdb and postgres.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL not found in /usr/lib/postgresql/*/bin (Debian package postgresql)")
}

// StartPostgres creates and starts a cluster, stopped and removed when the
// test ends. Without PostgreSQL the test is skipped, or failed in CI.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := PostgresBinDir()
	if err != nil {
		if InCI() {
			t.Fatalf("%v; CI=true requires it: ./scripts/test.sh installs it", err)
		}
		t.Skipf("skipping: %v (./scripts/test.sh installs it)", err)
	}
	p := &Postgres{Dir: WritableTempDir(t), bin: bin}
	t.Cleanup(p.Stop)
	if err := p.initdb(); err != nil {
		t.Fatal(err)
	}
	if err := p.start(0); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *Postgres) initdb() error {
	cmd := CommandAsUnprivileged(context.Background(), filepath.Join(p.bin, "initdb"),
		"-D", filepath.Join(p.Dir, "data"), "-U", postgresUser, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
	cmd.Dir = p.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// start runs the server on port, or on a free port when port is 0. A port
// taken between choosing it and the server binding it is retried with
// another one (a restart insists on its own port a while instead).
func (p *Postgres) start(port int) error {
	var lastErr error
	for attempt := range 10 {
		try := port
		if try == 0 {
			ports, err := freePorts(1)
			if err != nil {
				return err
			}
			try = ports[0]
		}
		err := p.run(try)
		if err == nil {
			p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(try))
			return nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "could not") { // bind, create socket
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return lastErr
}

// run starts postgres on port and waits until it accepts connections or
// exits.
func (p *Postgres) run(port int) error {
	logPath := filepath.Join(p.Dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	_ = ChownUnprivileged(logPath)
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", filepath.Join(p.Dir, "data"),
		"-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+p.Dir,
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	attr, err := asUnprivileged()
	if err != nil {
		return err
	}
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Pdeathsig = syscall.SIGINT // fast shutdown if the test binary dies
	attr.Setpgid = true
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		close(exited)
	}()
	url := p.urlOn(port, "postgres")
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, url)
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited (%v): %s", p.waitErr, tail(string(log), 10))
		default:
		}
		if time.Now().After(deadline) {
			p.stopProcess(syscall.SIGQUIT)
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres not ready: %v: %s", err, tail(string(log), 10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (p *Postgres) urlOn(port int, db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", postgresUser, port, db)
}

// URL returns the connection URL of database db.
func (p *Postgres) URL(db string) string {
	_, port, _ := net.SplitHostPort(p.Addr)
	n, _ := strconv.Atoi(port)
	return p.urlOn(n, db)
}

// NewDatabase creates an empty database with a fresh name and returns its
// URL.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test%d", p.dbs.Add(1))
	conn, err := pgx.Connect(t.Context(), p.URL("postgres"))
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: create database: %v", err)
	}
	return p.URL(name)
}

// Restart stops the server (fast shutdown: clients are disconnected) and
// starts it again on the same port with the same data.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	p.stopProcess(syscall.SIGINT)
	p.Start(t)
}

// Kill stops the server at once (immediate shutdown, as if it crashed);
// Start brings it back.
func (p *Postgres) Kill() { p.stopProcess(syscall.SIGQUIT) }

// Start starts a stopped server again on its port.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(p.Addr)
	n, _ := strconv.Atoi(port)
	if err := p.start(n); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
}

// Stop stops the server; the directory goes with the test's temporary
// directories.
func (p *Postgres) Stop() { p.stopProcess(syscall.SIGINT) }

// stopProcess sends sig to the postmaster (SIGINT fast, SIGQUIT immediate
// shutdown) and waits for its process group, killing it after 30 seconds.
func (p *Postgres) stopProcess(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	for i := 0; len(GroupPIDs(cmd.Process.Pid)) > 0 && i < 250; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}
