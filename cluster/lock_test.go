package cluster

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
	"github.com/popbridge/popbridge/internal/testing/pop3client"
	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// TestClusterLockSession: two replicas on one PostgreSQL store with
// --lock-session. A session on one makes a login on the other answer
// [IN-USE]; the holder killed with SIGKILL (no chance to unlock) frees the
// lock, because PostgreSQL ends the advisory lock with the dead process's
// connection; a QUIT frees it as well; other users are never blocked.
func TestClusterLockSession(t *testing.T) {
	t.Parallel()
	testenv.RequireTool(t, "dovecot")
	users := []testenv.User{{Name: "alice", Password: "alice-pw"}, {Name: "bob", Password: "bob-pw"}}
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: users})
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	bin := bridgeproc.Binary(t)
	a := startReplica(t, "pb1", bin, clusterArgs(d, url, "--lock-session")...)
	b := startReplica(t, "pb2", bin, clusterArgs(d, url, "--lock-session")...)

	opts := pop3client.Options{}
	holder := pop3client.Dial(t, a.b.POP3, opts)
	holder.MustLine("+OK")
	holder.Login("alice", "alice-pw")

	refused := pop3client.Dial(t, b.b.POP3, opts)
	refused.MustLine("+OK")
	refused.OK("USER alice")
	if s := refused.Cmd("PASS alice-pw"); !strings.HasPrefix(s, "-ERR [IN-USE]") {
		t.Fatalf("login on the second replica while the first holds alice: %q, want -ERR [IN-USE]", s)
	}
	if n := advisoryLocks(t, url); n != 1 {
		t.Errorf("%d advisory locks held in PostgreSQL, want 1 (alice's)", n)
	}
	other := pop3client.Dial(t, b.b.POP3, opts)
	other.MustLine("+OK")
	other.Login("bob", "bob-pw") // another user is not blocked
	other.OK("QUIT")

	a.b.Signal(syscall.SIGKILL)
	<-a.b.Done()
	// PostgreSQL notices the dead connection as soon as the kernel closes
	// it; the retry only covers that hand-over, not a timeout.
	var last string
	waitFor(t, "alice's lock to be freed after the holder was killed", 60*time.Second, func() bool {
		c := pop3client.Dial(t, b.b.POP3, opts)
		defer c.Close()
		c.MustLine("+OK")
		c.OK("USER alice")
		last = c.Cmd("PASS alice-pw")
		if strings.HasPrefix(last, "+OK") {
			c.OK("QUIT")
			return true
		}
		if !strings.HasPrefix(last, "-ERR [IN-USE]") {
			t.Fatalf("login after the holder was killed: %q", last)
		}
		return false
	})

	// The session that got the lock QUIT; its lock goes when the session
	// ends, just after the +OK.
	waitFor(t, "the lock to be released after that session's QUIT", 60*time.Second, func() bool { return advisoryLocks(t, url) == 0 })

	// A QUIT releases the lock too: log in on b, then again elsewhere.
	again := pop3client.Dial(t, b.b.POP3, opts)
	again.MustLine("+OK")
	again.Login("alice", "alice-pw")
	again.OK("QUIT")
	waitFor(t, "the lock to be released after QUIT", 60*time.Second, func() bool { return advisoryLocks(t, url) == 0 })
	c := startReplica(t, "pb3", bin, clusterArgs(d, url, "--lock-session")...)
	p := pop3client.Dial(t, c.b.POP3, opts)
	p.MustLine("+OK")
	p.Login("alice", "alice-pw")
	p.OK("QUIT")
}

// advisoryLocks counts the advisory locks held in the database.
func advisoryLocks(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").Scan(&n); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return n
}
