package cluster

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// replica is one popbridge process of the cluster, restartable: a new
// process gets new ports, and HAProxy is told so through its runtime API.
type replica struct {
	name string
	args []string
	bin  string
	b    *bridgeproc.Bridge
}

// startReplica runs popbridge with the cluster's common flags plus extra.
func startReplica(t *testing.T, name, bin string, args ...string) *replica {
	t.Helper()
	r := &replica{name: name, bin: bin, args: args}
	r.start(t)
	return r
}

func (r *replica) start(t *testing.T) {
	t.Helper()
	r.b = bridgeproc.Start(t, bridgeproc.Options{Binary: r.bin, Args: r.args, KillAtCleanup: true})
}

// clusterArgs are the flags every replica gets: the shared PostgreSQL
// store, the admin port HAProxy health-checks, and PROXY protocol from
// HAProxy on loopback.
func clusterArgs(dovecot *testenv.Dovecot, storeURL string, extra ...string) []string {
	return append([]string{
		"--upstream", "imap+insecure://" + dovecot.IMAPAddr,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--store", storeURL,
	}, extra...)
}

// haproxy runs deploy/haproxy/haproxy.cfg with loopback addresses, the
// replicas as its pop3 servers and its runtime API on a socket in a
// temporary directory.
type haproxy struct {
	Front  string // the pop3 frontend, "127.0.0.1:port"
	socket string
	cmd    *exec.Cmd
	log    bridgeproc.SyncBuffer
}

// shippedHAProxy is the configuration deploy/ ships.
var shippedHAProxy = filepath.Join("..", "deploy", "haproxy", "haproxy.cfg")

// startHAProxy starts HAProxy in front of replicas. Its frontend port is
// chosen below the kernel's ephemeral range (where no outgoing connection
// of a parallel test can take it) and the start is retried on a bind
// failure.
func startHAProxy(t *testing.T, replicas []*replica) *haproxy {
	t.Helper()
	bin := testenv.RequireTool(t, "haproxy")
	if out, err := exec.Command(bin, "-c", "-f", shippedHAProxy).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c %s: %v\n%s", shippedHAProxy, err, out)
	}
	dir := t.TempDir()
	h := &haproxy{socket: filepath.Join(dir, "admin.sock")}
	for attempt := 0; ; attempt++ {
		h.Front = fmt.Sprintf("127.0.0.1:%d", 20000+(os.Getpid()*7+attempt*131)%10000)
		cfgFile := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfgFile, []byte(h.config(t, replicas)), 0o644); err != nil {
			t.Fatal(err)
		}
		h.cmd = exec.Command(bin, "-db", "-f", cfgFile)
		h.log = bridgeproc.SyncBuffer{}
		h.cmd.Stdout, h.cmd.Stderr = &h.log, &h.log
		if err := h.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { h.cmd.Wait(); close(exited) }()
		if h.waitListening(exited) {
			t.Cleanup(func() {
				h.cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("haproxy log:\n%s", h.log.Tail(60))
				}
			})
			return h
		}
		if attempt == 5 || !strings.Contains(h.log.String(), "cannot bind") {
			t.Fatalf("haproxy did not start:\n%s", h.log.String())
		}
	}
}

// waitListening waits until HAProxy answers on its frontend and its
// runtime API, or exits.
func (h *haproxy) waitListening(exited <-chan struct{}) bool {
	for {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", h.Front, time.Second); err == nil {
			c.Close()
			if _, err := h.command("show info"); err == nil {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// config rewrites the shipped file for loopback: no chroot or user switch
// (the test is not root-only), the runtime API on a private socket, the
// pop3 frontend on h.Front, one server line per replica with its own
// health-check port. The pop3s frontend and backend are left out:
// cmd/popbridge's TestOpsBehindHAProxy covers them with one replica.
func (h *haproxy) config(t *testing.T, replicas []*replica) string {
	t.Helper()
	src, err := os.ReadFile(shippedHAProxy)
	if err != nil {
		t.Fatal(err)
	}
	serverLine := regexp.MustCompile(`^\s*server pb\d+ `)
	var out []string
	skip := false
	for _, l := range strings.Split(string(src), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && (f[0] == "frontend" || f[0] == "backend" || f[0] == "global" || f[0] == "defaults"):
			skip = len(f) > 1 && strings.HasSuffix(f[1], "pop3s")
		case skip:
			continue
		case len(f) > 0 && (f[0] == "chroot" || f[0] == "user" || f[0] == "group"):
			continue
		case len(f) > 0 && f[0] == "stats":
			l = "    stats socket " + h.socket + " mode 600 level admin"
		case len(f) == 2 && f[0] == "maxconn":
			l = "    maxconn 2000" // within the test's file descriptor limit
		case len(f) == 2 && f[0] == "bind" && f[1] == ":110":
			l = "    bind " + h.Front
		case serverLine.MatchString(l):
			continue // replaced below, after default-server
		}
		if skip {
			continue
		}
		out = append(out, l)
		if strings.Contains(l, "default-server") && len(out) > 0 {
			for _, r := range replicas {
				out = append(out, "    "+r.serverLine())
			}
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func (r *replica) serverLine() string {
	_, admin, _ := net.SplitHostPort(r.b.Admin)
	return fmt.Sprintf("server %s %s check port %s", r.name, r.b.POP3, admin)
}

// repoint tells HAProxy the replica's new addresses after a restart. The
// health-check port is a command of its own ("set server ... addr" ignores
// anything after its port, and a check left on the old admin port would
// keep the replica down for good), so the result is read back.
func (h *haproxy) repoint(t *testing.T, r *replica) {
	t.Helper()
	host, port, _ := net.SplitHostPort(r.b.POP3)
	_, admin, _ := net.SplitHostPort(r.b.Admin)
	for _, cmd := range []string{
		fmt.Sprintf("set server popbridge_pop3/%s addr %s port %s", r.name, host, port),
		fmt.Sprintf("set server popbridge_pop3/%s check-port %s", r.name, admin),
	} {
		if _, err := h.command(cmd); err != nil {
			t.Fatalf("haproxy runtime API: %s: %v", cmd, err)
		}
	}
	f := h.serverState(r.name)
	// srv_addr is field 4, srv_port 18, srv_check_port 21.
	if len(f) < 22 || f[4] != host || f[18] != port || f[21] != admin {
		t.Fatalf("haproxy runtime API: %s is %v after repointing, want %s port %s check-port %s", r.name, f, host, port, admin)
	}
}

// serverState is the replica's line of "show servers state", split into
// fields (be_id be_name srv_id srv_name srv_addr srv_op_state ...), or nil.
func (h *haproxy) serverState(name string) []string {
	out, err := h.command("show servers state popbridge_pop3")
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[3] == name {
			return f
		}
	}
	return nil
}

// serverUp reports whether HAProxy's health check has the replica up.
func (h *haproxy) serverUp(name string) bool {
	f := h.serverState(name)
	return f != nil && f[5] == "2" // srv_op_state 2: running
}

// serverDown reports whether HAProxy's health check has the replica down.
func (h *haproxy) serverDown(name string) bool {
	f := h.serverState(name)
	return f != nil && f[5] == "0" // srv_op_state 0: stopped
}

// command sends one line to HAProxy's runtime API and returns its answer.
func (h *haproxy) command(line string) (string, error) {
	c, err := net.DialTimeout("unix", h.socket, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return b.String(), sc.Err()
}

// waitFor polls cond until it holds; it fails the test after limit, which
// is only a backstop against a hang, never a measure of speed.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
