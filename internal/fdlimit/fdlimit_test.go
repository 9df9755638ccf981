package fdlimit

import (
	"bytes"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// The soft limit ends at the hard limit; the log line says so, and warns
// when that is below what the sessions need.
func TestRaise(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Lower the soft limit first (allowed without privilege), so Raise has
	// work to do; it is restored by Raise itself.
	low := lim
	low.Cur = min(lim.Max, 256)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	RaiseAndLog(zerolog.New(&buf), 10)
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if now.Cur != lim.Max {
		t.Fatalf("soft limit %d, want the hard limit %d", now.Cur, lim.Max)
	}
	if !strings.Contains(buf.String(), `"soft":`) || strings.Contains(buf.String(), `"level":"warn"`) {
		t.Fatalf("log %s", buf.String())
	}
	if low.Cur < lim.Max && !strings.Contains(buf.String(), "raised to the hard limit") {
		t.Fatalf("log %s", buf.String())
	}
	if lim.Max > 1<<30 {
		return // effectively unlimited: nothing to warn about
	}
	buf.Reset()
	huge := int(lim.Max) // 2 per session: never enough
	RaiseAndLog(zerolog.New(&buf), huge)
	if !strings.Contains(buf.String(), `"level":"warn"`) || !strings.Contains(buf.String(), "--max-sessions") {
		t.Fatalf("no warning for %d sessions with a limit of %d: %s", huge, lim.Max, buf.String())
	}
}
