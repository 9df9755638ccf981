package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// Server names, in the order every scenario runs them.
const (
	Popbridge = "popbridge"
	Native    = "dovecot-native"
	IMAPC     = "dovecot-imapc"
)

// Servers is the order of every round: A B C, A B C, ...
var Servers = []string{Popbridge, Native, IMAPC}

// fastLoginConfig lets one Dovecot mail process serve many sessions, so
// a login costs no fork and exec; applied to imap and pop3 alike on both
// Dovecots, so no side gets an advantage the others lack. A process left
// without sessions exits after a second (idle_kill, default a minute), so
// that memory scenarios start without processes fattened by earlier ones.
const fastLoginConfig = `
service imap {
  client_limit = 32
  service_count = 0
  idle_kill = 1 secs
}
service pop3 {
  client_limit = 32
  service_count = 0
  idle_kill = 1 secs
}
`

// env is everything a run measures: the upstream Dovecot (whose own POP3
// is the native baseline), the imapc Dovecot proxying it, and popbridge
// pointed at it.
type env struct {
	up, imapc *testenv.Dovecot
	upPGID    int
	imapcPGID int
	bridge    *exec.Cmd
	// bridgeExited is closed once bridge has exited (and been waited for).
	bridgeExited <-chan struct{}
	bridgeLog    *os.File
	addrs        map[string]string // server name -> POP3 address

	// What startBridge needs to start popbridge again.
	cfg         Config
	binary      string
	maxSessions int
}

// startEnv starts the two Dovecots (users must be known to the upstream
// before it starts) and popbridge from binary.
func startEnv(cfg Config, users []testenv.User, binary string) (_ *env, err error) {
	e := &env{addrs: map[string]string{}, cfg: cfg, binary: binary}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	extra := ""
	if !cfg.ProcessPerSession {
		extra = fastLoginConfig
	}
	maxSessions := max(cfg.IdleSessions+500, 2600)
	e.maxSessions = maxSessions
	e.up, err = testenv.StartDovecotProcess(testenv.DovecotOptions{
		Users: users, POP3: true, MaxSessions: maxSessions, ExtraConfig: extra,
	})
	if err != nil {
		return nil, fmt.Errorf("upstream dovecot: %w", err)
	}
	e.imapc, err = testenv.StartDovecotProcess(testenv.DovecotOptions{
		POP3: true, MaxSessions: maxSessions, ExtraConfig: extra, IMAPC: e.up.IMAPAddr,
	})
	if err != nil {
		return nil, fmt.Errorf("imapc dovecot: %w", err)
	}
	if e.upPGID, err = dovecotPGID(e.up.Dir); err != nil {
		return nil, err
	}
	if e.imapcPGID, err = dovecotPGID(e.imapc.Dir); err != nil {
		return nil, err
	}
	e.addrs[Native] = e.up.POP3Addr
	e.addrs[IMAPC] = e.imapc.POP3Addr
	if err := e.startBridge(); err != nil {
		return nil, err
	}
	return e, nil
}

// startBridge runs popbridge with its defaults except for the limits a
// load test from one address would hit.
func (e *env) startBridge() error {
	cfg, binary, maxSessions := e.cfg, e.binary, e.maxSessions
	var err error
	e.bridgeLog, err = os.OpenFile(filepath.Join(cfg.WorkDir, "popbridge.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("popbridge log: %w", err)
	}
	// The log is appended to across restarts: this process's lines start
	// here.
	st, err := e.bridgeLog.Stat()
	if err != nil {
		return fmt.Errorf("popbridge log: %w", err)
	}
	args := append([]string{
		// Port 0: popbridge binds a free port and logs it, so no other
		// process can take a port picked for it before it binds.
		"--listen", "127.0.0.1:0",
		"--upstream", "imap+insecure://" + e.up.IMAPAddr,
		// Every load client connects from 127.0.0.1.
		"--max-conns-per-ip", strconv.Itoa(maxSessions),
		"--max-userip-conns", strconv.Itoa(maxSessions),
		"--max-prelogin-conns", strconv.Itoa(maxSessions), // a burst of logins is not a flood
		"--max-sessions", strconv.Itoa(maxSessions),
	}, cfg.BridgeArgs...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout = e.bridgeLog
	cmd.Stderr = e.bridgeLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start popbridge: %w", err)
	}
	e.bridge = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	e.bridgeExited = exited
	// A hang guard, not a measurement: popbridge starts in well under a
	// second.
	deadline := time.Now().Add(time.Minute)
	for {
		if addr := startedAddr(e.bridgeLog.Name(), st.Size()); addr != "" {
			e.addrs[Popbridge] = addr
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("popbridge exited before listening (log: %s)", e.bridgeLogTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("popbridge did not log its start (log: %s)", e.bridgeLogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startedAddr returns the POP3 address from the "popbridge started" line
// written to the log file name after offset, "" while there is none.
func startedAddr(name string, offset int64) string {
	b, err := os.ReadFile(name)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	for line := range strings.SplitSeq(string(b[offset:]), "\n") {
		var e struct{ Message, Listen string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == "popbridge started" && e.Listen != "" {
			return e.Listen
		}
	}
	return ""
}

func (e *env) bridgeLogTail() string {
	if e.bridgeLog == nil {
		return ""
	}
	b, _ := os.ReadFile(e.bridgeLog.Name())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// bridgePID is popbridge's process id.
func (e *env) bridgePID() int { return e.bridge.Process.Pid }

// restartBridge stops popbridge and starts a new one, for measurements
// that need a process whose heap holds nothing from earlier scenarios: a
// Go process keeps freed memory for minutes.
func (e *env) restartBridge() error {
	e.stopBridge()
	return e.startBridge()
}

// stop ends popbridge and both Dovecots.
func (e *env) stop() {
	e.stopBridge()
	for _, d := range []*testenv.Dovecot{e.imapc, e.up} {
		if d != nil {
			_ = d.Stop()
		}
	}
}

func (e *env) stopBridge() {
	if e.bridge != nil {
		_ = e.bridge.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.bridgeExited:
		case <-time.After(5 * time.Second):
			_ = e.bridge.Process.Kill()
			<-e.bridgeExited
		}
		e.bridge = nil
	}
	if e.bridgeLog != nil {
		e.bridgeLog.Close()
		e.bridgeLog = nil
	}
}

// waitDovecotIdle waits until neither Dovecot runs an imap or pop3 mail
// process: with idle_kill (fastLoginConfig) a process that served earlier
// sessions exits a second after its last one, taking its heap with it, so
// that memory measured next is the next sessions' own.
func (e *env) waitDovecotIdle(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := len(mailProcesses(e.upPGID)) + len(mailProcesses(e.imapcPGID))
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d Dovecot mail processes still running after %v", n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// buildBridge builds ./cmd/popbridge of the module at root into dir.
func buildBridge(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "popbridge")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/popbridge")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/popbridge: %w\n%s", err, b)
	}
	return out, nil
}
