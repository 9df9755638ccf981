package security

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
)

func TestMain(m *testing.M) { bridgeproc.Main(m) }

// startBridge runs popbridge with args (plus --listen 127.0.0.1:0 unless
// args set --listen) and waits for its "popbridge started" line. It is
// stopped with SIGTERM when the test ends. Every log line must be one JSON
// object (a username must not be able to break one).
func startBridge(t *testing.T, args ...string) *bridgeproc.Bridge {
	t.Helper()
	if !hasFlag(args, "--listen") {
		args = append([]string{"--listen", "127.0.0.1:0"}, args...)
	}
	return bridgeproc.Start(t, bridgeproc.Options{
		// Without -race: the tests bound the bridge's peak RSS.
		Binary: bridgeproc.PlainBinary(t),
		Args:   args,
		// Nothing from the developer's environment.
		Env:          []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()},
		StartTimeout: 15 * time.Second,
		StopTimeout:  15 * time.Second,
		StrictJSON:   true,
	})
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// memKiB reads a field such as VmRSS or VmHWM (peak RSS) of the process.
func memKiB(t *testing.T, b *bridgeproc.Bridge, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.Pid()))
	if err != nil {
		t.Fatalf("reading memory of popbridge: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatalf("parsing %q: %v", s.Text(), err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc status", field)
	return 0
}
