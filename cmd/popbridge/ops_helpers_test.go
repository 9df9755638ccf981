package main

// Helpers for the black-box operations tests: they build the real binary,
// run it on random loopback ports, talk POP3 and HTTP to it and read its
// JSON log lines, as an operator's tooling would (internal/testing/bridgeproc and
// internal/testing/pop3client do the work).

import (
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

func TestMain(m *testing.M) { bridgeproc.Main(m) }

// opsStart runs bin with args (and no POPBRIDGE_* from the caller) and
// waits for its "popbridge started" line. The process is killed when the
// test ends if it is still running.
func opsStart(t *testing.T, bin string, args ...string) *bridgeproc.Bridge {
	t.Helper()
	return bridgeproc.Start(t, bridgeproc.Options{
		Binary:        bin,
		Args:          args,
		StartTimeout:  20 * time.Second,
		KillAtCleanup: true,
	})
}

// opsClient's bounds only keep a broken popbridge from hanging a test:
// each read, write and close wait may take 2 minutes, far more than any
// answer needs even on a loaded machine (15 s reads were overshot there).
var opsClient = pop3client.Options{OpTimeout: 2 * time.Minute, WriteTimeout: 2 * time.Minute, CloseTimeout: 2 * time.Minute}

// opsDial connects to addr; prefix (a PROXY header, say) is sent first.
func opsDial(t *testing.T, addr string, prefix []byte) *pop3client.Client {
	t.Helper()
	o := opsClient
	o.Prefix = prefix
	return pop3client.Dial(t, addr, o)
}
