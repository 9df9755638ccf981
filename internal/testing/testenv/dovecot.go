package testenv

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/certs"
)

// User is a mail account of a test Dovecot.
type User struct {
	Name     string
	Password string
}

// DovecotOptions configures StartDovecot.
type DovecotOptions struct {
	// Users are the accounts Dovecot accepts, with plain-text passwords.
	Users []User
	// POP3 also starts Dovecot's own POP3 server on POP3Addr, serving the
	// same mail store; benchmarks and comparison tests use it.
	POP3 bool
	// MaxSessions bounds the concurrent IMAP sessions (and, separately, POP3
	// sessions); every limit Dovecot has (processes, per-user-per-IP
	// connections, auth and anvil clients) is sized from it. 0 means 4096.
	MaxSessions int
	// AuthDelays keeps Dovecot's defences against password guessing: a
	// failed login is answered after auth_failure_delay (2 seconds), and
	// each failure from a remote IP delays that IP's next authentication, 2
	// seconds doubling up to 15. Off by default: a wrong password then fails
	// at once, so failed-login tests stay fast.
	AuthDelays bool
	// ExtraConfig is appended to dovecot.conf; later settings override
	// earlier ones. Each session gets its own imap process, as in
	// production; for faster logins at the cost of that fidelity, let one
	// process serve many sessions:
	//
	//	service imap {
	//	  client_limit = 32
	//	  service_count = 0
	//	}
	ExtraConfig string
	// IMAPC, an IMAP server's "host:port", makes this Dovecot a proxy of
	// that server, as Dovecot's own POP3-over-IMAP deployments are: every
	// login is checked by logging in there (passdb imap) and the mail is
	// read from there with the imapc storage (mail_location imapc:~/imapc,
	// imapc_features rfc822.size fetch-headers); nothing is stored here
	// but imapc's index. Users is then ignored. Benchmarks use it as the
	// baseline popbridge must beat.
	IMAPC string
	// OAuth2, when set, also accepts XOAUTH2 and OAUTHBEARER logins with
	// Dovecot's oauth2 passdb (see DovecotOAuth2).
	OAuth2 *DovecotOAuth2
	// MasterUser, when set, is a Dovecot master user: logging in as
	// "user*name" with its password acts as user (auth_master_user_separator
	// "*"), as popbridge's immediate restore does.
	MasterUser *User
}

// Dovecot is a running Dovecot master process with its own configuration,
// mail store and log, all under Dir:
//
//	Dir/dovecot.conf   the generated configuration
//	Dir/dovecot.log    every log line (Log returns it)
//	Dir/passwd         the users, as a passwd-file
//	Dir/home/USER/Maildir
//	Dir/tls/cert.pem   the self-signed certificate (CAFile)
//
// Plain-text LOGIN works on IMAPAddr without TLS; IMAPAddr also offers
// STARTTLS, and IMAPSAddr is implicit TLS, both with the certificate in
// CAFile. Mailbox hierarchy separator is "/".
type Dovecot struct {
	IMAPAddr  string // "127.0.0.1:port": IMAP, STARTTLS offered, not required
	IMAPSAddr string // "127.0.0.1:port": IMAP over implicit TLS
	POP3Addr  string // "127.0.0.1:port" when DovecotOptions.POP3, else ""
	Dir       string // everything Dovecot reads and writes; removed by Stop
	CAFile    string // PEM certificate to trust for IMAPSAddr and STARTTLS
	Version   string // as printed by dovecot --version, e.g. "2.3.19.1 (9b53102964)"

	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has been waited for
	waitErr  error         // cmd.Wait's result, valid once exited is closed
	stopOnce sync.Once
	stopErr  error

	mu    sync.Mutex
	users map[string]string // name -> password
}

// StartDovecot starts a Dovecot for the test and stops it, removing its
// directory, when the test ends; if the test failed, the tail of Dovecot's
// log is logged first. The test is skipped (failed when InCI) if Dovecot is
// not installed.
func StartDovecot(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	RequireTool(t, "dovecot")
	RequireTool(t, "imap") // /usr/lib/dovecot/imap, from dovecot-imapd
	if opts.POP3 {
		RequireTool(t, "pop3") // from dovecot-pop3d
	}
	d, err := StartDovecotProcess(opts)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: tail of %s:\n%s", filepath.Join(d.Dir, "dovecot.log"), d.logTail(40))
		}
		if err := d.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return d
}

// StartDovecotProcess is StartDovecot for programs without a testing.TB,
// such as benchmarks: it returns once the IMAP (and POP3) port answers with
// a greeting. The caller must call Stop.
func StartDovecotProcess(opts DovecotOptions) (*Dovecot, error) {
	bin, err := LookTool("dovecot")
	if err != nil {
		return nil, fmt.Errorf("start dovecot: %w", err)
	}
	version, err := dovecotVersion(bin)
	if err != nil {
		return nil, err
	}
	uid, gid, userName, ok := UnprivilegedUser()
	if !ok {
		return nil, errors.New("start dovecot: no unprivileged user to run as (want \"nobody\" when root)")
	}
	grp, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return nil, fmt.Errorf("start dovecot: group of %s: %w", userName, err)
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 4096
	}

	dir, err := os.MkdirTemp("", "popbridge-dovecot-")
	if err != nil {
		return nil, fmt.Errorf("start dovecot: %w", err)
	}
	d := &Dovecot{
		Dir:     dir,
		CAFile:  filepath.Join(dir, "tls", "cert.pem"),
		Version: version,
		users:   make(map[string]string),
	}
	if err := d.prepareDir(opts.Users); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start dovecot: %w", err)
	}
	cfg := dovecotConfig{
		Dir: dir, User: userName, Group: grp.Name, UID: uid, GID: gid,
		POP3: opts.POP3, MaxSessions: opts.MaxSessions, AuthDelays: opts.AuthDelays,
		Extra: opts.ExtraConfig, OAuth2: opts.OAuth2 != nil, Master: opts.MasterUser != nil,
	}
	if u := opts.MasterUser; u != nil {
		err := checkUser(*u)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "masters"), []byte(passwdLine(*u)), 0o644)
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start dovecot: master user: %w", err)
		}
	}
	if opts.OAuth2 != nil {
		if err := opts.OAuth2.write(dir); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start dovecot: %w", err)
		}
	}
	if opts.IMAPC != "" {
		host, port, err := net.SplitHostPort(opts.IMAPC)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("start dovecot: IMAPC %q: %w", opts.IMAPC, err)
		}
		cfg.IMAPCHost, cfg.IMAPCPort = host, port
	}

	// Dovecot cannot listen on port 0 and report the port it got, so the
	// ports are picked (freePorts) and may be taken before Dovecot binds
	// them; another attempt with new ports is the cure. A port taken by
	// another test's server is no bind error but a foreign greeting, hence
	// the instance's own greeting.
	const attempts = 5
	for i := 1; ; i++ {
		cfg.Greeting = "popbridge-test-dovecot-" + randomHex(8)
		err = d.start(bin, cfg)
		if err == nil {
			return d, nil
		}
		d.stopProcess()
		if i == attempts || !portTrouble(err, d.logTail(20)) {
			_ = d.removeDir()
			return nil, err
		}
	}
}

// portTrouble reports whether a failed start is about its ports: one was
// taken before Dovecot bound it (by anyone, or by another test's server,
// which then answered with its own greeting).
func portTrouble(err error, log string) bool {
	return errors.Is(err, errForeignGreeting) ||
		strings.Contains(log, "Address already in use") || strings.Contains(log, "Failed to start listeners")
}

var errForeignGreeting = errors.New("another server answers on the port")

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var versionRE = regexp.MustCompile(`^(\d+)\.(\d+)`)

// dovecotVersion returns bin's version, refusing those whose configuration
// language dovecotConfig does not speak: 2.4 renamed most of what it uses.
func dovecotVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	version := strings.TrimSpace(string(out))
	m := versionRE.FindStringSubmatch(version)
	if m == nil {
		return "", fmt.Errorf("%s --version: unexpected output %q", bin, version)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major != 2 || minor != 3 {
		return "", fmt.Errorf("dovecot %s: testenv generates Dovecot 2.3 configuration only (Debian 12)", version)
	}
	return version, nil
}

// prepareDir creates the directory tree, the passwd-file and the
// certificate.
func (d *Dovecot) prepareDir(users []User) error {
	// Dovecot's config parser takes paths bare: keep them plain.
	if strings.ContainsAny(d.Dir, " \t\n\"'#<>{}%$\\") {
		return fmt.Errorf("temporary directory %q has characters Dovecot's config cannot take; set TMPDIR", d.Dir)
	}
	if err := os.Chmod(d.Dir, 0o755); err != nil {
		return err
	}
	for _, sub := range []string{"run", "state", "home", "tls"} {
		if err := os.Mkdir(filepath.Join(d.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	var passwd bytes.Buffer
	for _, u := range users {
		if err := checkUser(u); err != nil {
			return err
		}
		if _, dup := d.users[u.Name]; dup {
			return fmt.Errorf("user %q listed twice", u.Name)
		}
		d.users[u.Name] = u.Password
		passwd.WriteString(passwdLine(u))
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "passwd"), passwd.Bytes(), 0o600); err != nil {
		return err
	}
	if _, err := certs.Write(d.CAFile, filepath.Join(d.Dir, "tls", "key.pem")); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}

func checkUser(u User) error {
	if u.Name == "" || strings.ContainsAny(u.Name, ":/ \t\r\n%") {
		return fmt.Errorf("user name %q: want no ':', '/', '%%' or white space", u.Name)
	}
	if strings.ContainsAny(u.Password, ":\r\n") {
		return fmt.Errorf("password of %q: want no ':' or line break", u.Name)
	}
	return nil
}

func passwdLine(u User) string {
	return u.Name + ":{PLAIN}" + u.Password + "\n"
}

// AddUser adds an account to the running Dovecot and returns once Dovecot
// accepts it: Dovecot re-reads a changed passwd-file at most once a second,
// so this may take up to a second.
func (d *Dovecot) AddUser(u User) error {
	if err := checkUser(u); err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.users[u.Name]; dup {
		return fmt.Errorf("add user: %q exists", u.Name)
	}
	f, err := os.OpenFile(filepath.Join(d.Dir, "passwd"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	if _, err := f.WriteString(passwdLine(u)); err != nil {
		_ = f.Close()
		return fmt.Errorf("add user: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	d.users[u.Name] = u.Password
	// A lookup in this second may have read the file just before the write;
	// the first lookup in the next second sees the change.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	return nil
}

// password returns user's password, or an error for an unknown user.
func (d *Dovecot) password(user string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pw, ok := d.users[user]
	if !ok {
		return "", fmt.Errorf("no test user %q", user)
	}
	return pw, nil
}

// start writes the configuration with fresh ports and starts the master,
// returning once it greets.
func (d *Dovecot) start(bin string, cfg dovecotConfig) error {
	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	cfg.IMAPPort, cfg.IMAPSPort, cfg.POP3Port = ports[0], ports[1], ports[2]
	d.IMAPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.IMAPPort))
	d.IMAPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.IMAPSPort))
	d.POP3Addr = ""
	if cfg.POP3 {
		d.POP3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.POP3Port))
	}

	conf := filepath.Join(d.Dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(cfg.render()), 0o644); err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	// Logs of a failed attempt would confuse the next one's error.
	_ = os.Remove(filepath.Join(d.Dir, "dovecot.log"))
	_ = os.Remove(filepath.Join(d.Dir, "dovecot.stderr"))
	// Dovecot runs entirely as the unprivileged user ("rootless"): it must
	// own its directory.
	if err := ChownUnprivileged(d.Dir); err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}

	// Go hands children the soft open-file limit it started with; Dovecot's
	// master and login processes want the hard one for thousands of sessions.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"`,
		bin, "-F", "-c", conf)
	cmd.Dir = d.Dir
	// A file, not a pipe: Wait would wait for every child holding the pipe.
	out, err := os.OpenFile(filepath.Join(d.Dir, "dovecot.stderr"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	defer out.Close()
	cmd.Stdout = out
	cmd.Stderr = out
	attr, err := asUnprivileged()
	if err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	// Dovecot must not outlive a test binary that dies without cleanup.
	attr.Pdeathsig = syscall.SIGTERM
	// Its own process group, so that Stop can end and wait for the
	// children, which may outlive the master by seconds.
	attr.Setpgid = true
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dovecot: %w", err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() {
		d.waitErr = cmd.Wait()
		close(d.exited)
	}()

	if err := d.waitReady(cfg.Greeting); err != nil {
		return fmt.Errorf("start dovecot (%s): %w\n%s", conf, err, d.logTail(20))
	}
	return nil
}

// startTimeout bounds a start that never greets: the master neither
// serves nor exits. It is no assertion, only a way not to hang until go
// test's timeout; a loaded machine starts Dovecot in well under a second.
const startTimeout = 2 * time.Minute

// waitReady waits until the IMAP port, and the POP3 port if any, greet
// with greeting (this instance's), or the master exits.
func (d *Dovecot) waitReady(greeting string) error {
	deadline := time.Now().Add(startTimeout)
	type probe struct{ addr, greeting string }
	probes := []probe{{d.IMAPAddr, "* OK"}}
	if d.POP3Addr != "" {
		probes = append(probes, probe{d.POP3Addr, "+OK"})
	}
	for _, p := range probes {
		for {
			err := greets(p.addr, p.greeting, greeting, deadline)
			if err == nil {
				break
			}
			if errors.Is(err, errForeignGreeting) {
				return err
			}
			select {
			case <-d.exited:
				return fmt.Errorf("dovecot exited: %v", d.waitErr)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no greeting within %v: %w", startTimeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// greets dials addr and reads a first line starting with want and
// containing ours.
func greets(addr, want, ours string, deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, want) || !strings.Contains(line, ours) {
		return fmt.Errorf("%w: %s greeted %q", errForeignGreeting, addr, line)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// freePorts returns n distinct loopback ports that were free a moment
// ago, for servers that cannot listen on port 0 and report the port they
// got (Dovecot, PostgreSQL, HAProxy). They come from below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range), where no outgoing
// connection of a parallel test can take them between the pick and the
// server's bind; random picks keep parallel test processes apart. Callers
// still retry with new ports when the server cannot bind one.
func freePorts(n int) ([]int, error) { return freePortsOn("127.0.0.1", n) }

// freePortsOn is freePorts on host ("127.0.0.1", "::1").
func freePortsOn(host string, n int) ([]int, error) {
	low, high := portRange()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("pick a free port: none free in %d-%d", low, high)
		}
		port := low + mrand.IntN(high-low+1)
		if slices.Contains(ports, port) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		ports = append(ports, port)
	}
	return ports, nil
}

// portRange is where freePorts picks: from 20000 up to the ephemeral
// range's start (32768 on Linux by default).
func portRange() (low, high int) {
	low, high = 20000, 32767
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start-1 > low+1000 {
			high = start - 1
		} else if err == nil {
			// An unusual range that starts low: pick above it.
			if end, err := strconv.Atoi(f[1]); err == nil && end < 64000 {
				low, high = end+1, 65000
			}
		}
	}
	return low, high
}

// Stop stops Dovecot (SIGTERM, SIGKILL after 10 seconds) and removes Dir.
// Calling it again does nothing and returns the first result.
func (d *Dovecot) Stop() error {
	d.stopOnce.Do(func() {
		d.stopProcess()
		if err := d.removeDir(); err != nil {
			d.stopErr = fmt.Errorf("stop dovecot: %w", err)
		}
	})
	return d.stopErr
}

// stopProcess ends the master and its children and waits for them.
func (d *Dovecot) stopProcess() {
	if d.cmd == nil {
		return
	}
	// The whole group at once: the master alone exits without waiting for
	// its children, which then linger until their next timeout.
	pgid := d.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-d.exited
	}
	// Orphaned children are reaped by init, at its own pace: wait only
	// until none is running.
	for i := 0; groupRunning(pgid); i++ {
		switch i {
		case 100: // 2 seconds
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case 200:
			d.cmd = nil
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.cmd = nil
}

// groupRunning reports whether a process of group pgid is alive and not a
// zombie.
func groupRunning(pgid int) bool { return len(GroupPIDs(pgid)) > 0 }

// GroupPIDs returns the live (non-zombie) processes of process group pgid,
// from /proc. A testenv Dovecot runs its master and every child in a group
// of its own, so this lists all of its processes.
func GroupPIDs(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold anything.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeDir removes Dir, retrying briefly: children of the master may still
// be writing while they exit.
func (d *Dovecot) removeDir() error {
	var err error
	for range 50 {
		if err = os.RemoveAll(d.Dir); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Log returns Dovecot's log so far, after anything the master wrote to
// stderr before its log was open; e.g. to check the rip= of a login.
func (d *Dovecot) Log() string {
	stderr, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.stderr"))
	log, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	return string(stderr) + string(log)
}

// logTail returns the last n lines of Log.
func (d *Dovecot) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(d.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
