package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestUIDLImport migrates a user from Dovecot's POP3 server (with
// pop3_uidl_format %g, which popbridge cannot derive) with the popbridge
// binary, as docs/migration.md's runbook does: mpop leaves the mail on the
// old server, "popbridge uidl import" (dry run, then for real, then again)
// copies the UIDLs into a SQLite store, and popbridge started with that
// --store serves the same mpop account, which downloads nothing.
func TestUIDLImport(t *testing.T) {
	t.Parallel()
	const user = "migrant"
	d := testenv.StartDovecot(t, testenv.DovecotOptions{
		POP3:        true,
		Users:       []testenv.User{{Name: user, Password: password(user)}},
		ExtraConfig: "pop3_uidl_format = %g",
	})
	msgs := smallCorpus()
	appendMessages(t, d, user, msgs)

	client := newLeaveOnServer(t, user)
	fetch := client.fetch
	if n := fetch(d.POP3Addr); n != len(msgs) {
		t.Fatalf("sync with the old server: %d messages, want %d", n, len(msgs))
	}

	dir := t.TempDir()
	mailboxes := filepath.Join(dir, "users.txt")
	writeFile(t, mailboxes, 0o600, "# migrated users\n"+user+" "+password(user)+"\n")
	storeFlags := []string{"--store", "sqlite:state.db", "--data-dir", dir}
	importTool := func(extra ...string) (string, string, int) {
		t.Helper()
		args := append([]string{"uidl", "import", "--from", "pop3://" + d.POP3Addr, "--from-ca", d.CAFile, "--mailboxes", mailboxes,
			"--upstream", "imap+insecure://" + d.IMAPAddr}, storeFlags...)
		cmd := exec.Command(bridgeproc.Binary(t), append(args, extra...)...)
		cmd.Env = cleanEnv()
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{stdout.String(), stderr.String()} {
			if strings.Contains(out, password(user)) {
				t.Fatalf("uidl import printed the password:\n%s", out)
			}
		}
		return stdout.String(), stderr.String(), code
	}

	type report struct {
		DryRun    bool `json:"dry_run"`
		Mailboxes []struct {
			User, Status string
			POP3         int `json:"pop3_messages"`
			Matched      int `json:"matched"`
			Unmatched    int `json:"unmatched"`
			Ambiguous    int `json:"ambiguous"`
		} `json:"mailboxes"`
	}
	out, errOut, code := importTool("--dry-run", "--json")
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("dry run: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	if m := r.Mailboxes; !r.DryRun || len(m) != 1 || m[0].Status != "dry-run" || m[0].Matched != len(msgs) || m[0].Unmatched+m[0].Ambiguous != 0 {
		t.Fatalf("dry run report: %s", out)
	}
	// The dry run stored nothing: the real run imports (a mailbox with
	// UIDLs would be skipped).
	out, errOut, code = importTool()
	if want := fmt.Sprintf("%s: imported mailbox=INBOX pop3=%d imap=%d matched=%d unmatched=0 ambiguous=0", user, len(msgs), len(msgs), len(msgs)); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("import: exit %d, want %q in\n%s%s", code, want, out, errOut)
	}
	if out, errOut, code = importTool(); code != 0 || !strings.Contains(out, user+": skipped") {
		t.Fatalf("second import: exit %d, want the mailbox skipped\n%s%s", code, out, errOut)
	}
	if _, errOut, code = importTool("--concurrency", "0"); code != 2 || !strings.Contains(errOut, "--concurrency") {
		t.Fatalf("bad flag: exit %d, %s", code, errOut)
	}

	b := startBridge(t, d, storeFlags...)
	if n := fetch(b.POP3); n != 0 {
		t.Fatalf("through popbridge after the import mpop downloaded %d messages, want none", n)
	}
	d.Append(t, user, "INBOX", message("after", "After the switch", nil, "New.\r\n"))
	if n := fetch(b.POP3); n != 1 {
		t.Fatalf("new mail through popbridge: %d messages, want 1", n)
	}
}
