package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestOpsFail2banFilter feeds real popbridge log output to fail2ban-regex
// with deploy/fail2ban/filter.d/popbridge.conf: every refused login's
// client address is found (PROXY-forwarded ones too), and neither a
// successful login nor a login refused because the upstream is down is.
func TestOpsFail2banFilter(t *testing.T) {
	f2b := testenv.RequireTool(t, "fail2ban-regex")
	bin := bridgeproc.Binary(t)

	// Bad passwords, behind a load balancer, so the log has public
	// addresses; plaintext allowed so USER/PASS and AUTH PLAIN reach the
	// upstream.
	p := opsStart(t, bin, "--demo", "--listen", "127.0.0.1:0", "--proxy-protocol", "127.0.0.1/32",
		"--plaintext-auth", "always", "--auth-fail-delay", "1ms", "--auth-penalty-max", "1ms")
	c := opsDial(t, p.POP3, proxyV1("203.0.113.7", 40001))
	c.MustLine("+OK")
	for range 2 {
		c.OK("USER demo")
		c.CmdPrefix("PASS guess", "-ERR [AUTH]")
	}
	c.OK("QUIT")
	c = opsDial(t, p.POP3, proxyV2(t, "2001:db8:5::23", 40002))
	c.MustLine("+OK")
	c.CmdPrefix("AUTH PLAIN AGRlbW8Ad3Jvbmc=", "-ERR [AUTH]") // \0demo\0wrong
	c.OK("QUIT")
	c = opsDial(t, p.POP3, proxyV1("198.51.100.30", 40003)) // a good login: never banned
	c.MustLine("+OK")
	c.OK("USER demo")
	c.OK("PASS demo")
	c.OK("QUIT")
	p.WaitLog(map[string]string{"event": "session_end", "client_ip": "198.51.100.30", "result": "quit"}, 5*time.Second)

	// The upstream is down: a temporary failure, not the client's fault.
	deadAddr := testenv.RefusedAddr(t)
	q := opsStart(t, bin, "--upstream", "imap+insecure://"+deadAddr, "--listen", "127.0.0.1:0",
		"--proxy-protocol", "127.0.0.1/32", "--plaintext-auth", "always", "--auth-fail-delay", "1ms")
	c = opsDial(t, q.POP3, proxyV1("192.0.2.50", 40004))
	c.MustLine("+OK")
	c.OK("USER demo")
	c.CmdPrefix("PASS demo", "-ERR [SYS/TEMP]")
	c.OK("QUIT")
	q.WaitLog(map[string]string{"event": "login_temp_failure", "client_ip": "192.0.2.50"}, 5*time.Second)

	logFile := filepath.Join(t.TempDir(), "popbridge.log")
	lines := append(p.Lines(), q.Lines()...)
	if err := os.WriteFile(logFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	filter, err := filepath.Abs("../../deploy/fail2ban/filter.d/popbridge.conf")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(f2b, "--out", "ip", logFile, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	want := []string{"203.0.113.7", "203.0.113.7", "2001:db8:5::23"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("fail2ban-regex found %q, want %q; log:\n%s", got, want, strings.Join(lines, "\n"))
	}
}

// TestOpsFail2banJail has fail2ban-client test a configuration made of the
// system's /etc/fail2ban (its own jails off) plus deploy/fail2ban.
func TestOpsFail2banJail(t *testing.T) {
	client := testenv.RequireTool(t, "fail2ban-client")
	if _, err := os.Stat("/etc/fail2ban/jail.conf"); err != nil {
		t.Skipf("no /etc/fail2ban to build on: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "fail2ban")
	if out, err := exec.Command("cp", "-r", "/etc/fail2ban", dir).CombinedOutput(); err != nil {
		t.Fatalf("copying /etc/fail2ban: %v\n%s", err, out)
	}
	jails, _ := filepath.Glob(filepath.Join(dir, "jail.d", "*"))
	for _, j := range jails {
		os.Remove(j) // distribution jails (sshd) need logs this machine may not have
	}
	for _, f := range []string{"filter.d/popbridge.conf", "jail.d/popbridge.conf"} {
		data, err := os.ReadFile(filepath.Join(deployDir, "fail2ban", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(client, "-c", dir, "-t").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("fail2ban-client -t: %v\n%s", err, out)
	}
}
