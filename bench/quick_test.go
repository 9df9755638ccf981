package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestQuickRun runs the whole benchmark program in quick mode against
// real Dovecots and a freshly built popbridge. It asserts only that every
// scenario ran on every server without an error and that every byte
// downloaded was compared with the seeded content; it times nothing.
func TestQuickRun(t *testing.T) {
	for _, tool := range []string{"dovecot", "imap", "pop3", "go"} {
		testenv.RequireTool(t, tool)
	}
	cfg := QuickConfig()
	cfg.ModuleRoot = ".."
	// A binary built elsewhere, e.g. while the working tree is mid-edit.
	cfg.BridgeBinary = os.Getenv("POPBENCH_POPBRIDGE")
	cfg.WorkDir = testenv.WritableTempDir(t)
	cfg.Log = testLog{t}
	// No time budget of its own (the build alone can take minutes on a
	// loaded CI machine): the run stops a minute before go test's -timeout
	// would, so a hang fails with the log of how far it got.
	ctx := t.Context()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-time.Minute))
		defer cancel()
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failed() {
		t.Error(f)
	}
	if got, want := len(rep.Scenarios), len(ScenarioNames(cfg)); got != want {
		t.Errorf("%d scenarios reported, want %d", got, want)
	}

	var small, large, huge int64
	small = cfg.Small.Size * int64(cfg.Small.Count)
	for _, s := range cfg.Large {
		large += s.Size * int64(s.Count)
	}
	huge = cfg.HugeSize
	wantVerified := map[string]int64{
		"download-small": small * int64(cfg.Reps),
		"download-large": large * int64(cfg.Reps),
		"retr-huge":      huge * int64(cfg.Reps),
	}
	for _, s := range rep.Scenarios {
		for _, server := range Servers {
			st := s.Servers[server]
			if st == nil || len(st.Runs) != cfg.Reps {
				t.Errorf("%s: %s ran %v rounds, want %d", s.Name, server, st, cfg.Reps)
				continue
			}
			if want, ok := wantVerified[s.Name]; ok && st.Verified != want {
				t.Errorf("%s: %s: %d octets verified, want %d", s.Name, server, st.Verified, want)
			}
			if strings.HasPrefix(s.Name, "top-") && st.Verified == 0 {
				t.Errorf("%s: %s: no header verified", s.Name, server)
			}
			if strings.HasPrefix(s.Name, "idle-") && st.Median["held"] != float64(cfg.IdleSessions) {
				t.Errorf("%s: %s held %v sessions, want %d", s.Name, server, st.Median["held"], cfg.IdleSessions)
			}
		}
	}
	if len(rep.Verdicts) != 9 {
		t.Errorf("%d verdicts, want the issue's 9 targets", len(rep.Verdicts))
	}
	if md := rep.Markdown(); !strings.Contains(md, "| retr-huge |") {
		t.Errorf("Markdown lacks the figures:\n%s", md)
	}
}
