package bridge

import (
	"os"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/store"
)

// cmd sends one POP3 command on s and returns the first line of the
// answer (multi-line answers are read to their end).
func (s *popSession) cmd(t *testing.T, line string, multi bool) string {
	t.Helper()
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		t.Fatal(err)
	}
	first, err := s.r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if multi && strings.HasPrefix(first, "+OK") {
		for {
			l, err := s.r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if l == ".\r\n" {
				break
			}
		}
	}
	return strings.TrimSpace(first)
}

// stat logs in on b, returns STAT's answer and quits without deleting.
func stat(t *testing.T, b *Bridge) string {
	t.Helper()
	s, answer := loginHeld(t, b.Addrs().POP3)
	if !strings.HasPrefix(answer, "+OK") {
		t.Fatalf("login: %q", answer)
	}
	st := s.cmd(t, "STAT", false)
	s.cmd(t, "QUIT", false)
	return st
}

// startOn assembles and serves a bridge for the demo server with extra
// arguments.
func startOn(t *testing.T, d *demo.Server, args ...string) *Bridge {
	t.Helper()
	b, err := newFromArgs(t, append([]string{"--upstream", "imap+insecure://" + d.Addr, "--plaintext-auth", "always"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	served := b.Start()
	t.Cleanup(func() { b.Close(); <-served })
	return b
}

// TestStoreOutageLosesNoMail: with an explicit PostgreSQL store (the
// deletion journal on), a QUIT while the database is down applies nothing
// and answers -ERR; once the database is back (no restart of popbridge) the
// same delete is journaled and applied; a second bridge started on the
// same database afterwards reads the journal the first one wrote.
func TestStoreOutageLosesNoMail(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	d, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	b := startOn(t, d, "--store", url+"&connect_timeout=2")
	before := stat(t, b)

	s, answer := loginHeld(t, b.Addrs().POP3)
	if !strings.HasPrefix(answer, "+OK") {
		t.Fatalf("login: %q", answer)
	}
	if a := s.cmd(t, "DELE 1", false); !strings.HasPrefix(a, "+OK") {
		t.Fatalf("DELE: %q", a)
	}
	pg.Kill()
	if a := s.cmd(t, "QUIT", false); !strings.HasPrefix(a, "-ERR") {
		t.Fatalf("QUIT with the journal's database down: %q, want -ERR", a)
	}
	if n := storeErrors(t, b, "append_journal"); n < 1 {
		t.Errorf("popbridge_store_errors_total{op=append_journal} = %v after a failed journal write", n)
	}
	pg.Start(t)
	waitFor(t, "the store back", func() bool { return b.Ready() == nil })
	if after := stat(t, b); after != before {
		t.Fatalf("STAT after the failed QUIT: %q, before %q: a delete was applied without its journal entry", after, before)
	}

	s, _ = loginHeld(t, b.Addrs().POP3)
	s.cmd(t, "DELE 1", false)
	if a := s.cmd(t, "QUIT", false); !strings.HasPrefix(a, "+OK") {
		t.Fatalf("QUIT with the database back: %q", a)
	}
	if after := stat(t, b); after == before {
		t.Fatalf("STAT %q unchanged after a QUIT that applied a delete", after)
	}

	// A new popbridge on the same database (a restart, or another replica)
	// sees what the first one journaled.
	b2 := startOn(t, d, "--store", url)
	entries, err := b2.sharedStore().Journal(t.Context(), store.JournalQuery{User: demo.Username})
	if err != nil {
		t.Fatal(err)
	}
	applied := 0
	for _, e := range entries {
		if e.Outcome == "applied" {
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("journal read by a second bridge: %+v, want one applied entry", entries)
	}
}

// TestStoreKeptAcrossRestartSQLite: a bridge on a SQLite file journals a
// delete; after it is closed, a new bridge on the same file reads it.
func TestStoreKeptAcrossRestartSQLite(t *testing.T) {
	dir := t.TempDir()
	d, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	b, err := newFromArgs(t, "--upstream", "imap+insecure://"+d.Addr, "--plaintext-auth", "always", "--store", "sqlite:state.db", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	served := b.Start()
	s, _ := loginHeld(t, b.Addrs().POP3)
	s.cmd(t, "DELE 1", false)
	if a := s.cmd(t, "QUIT", false); !strings.HasPrefix(a, "+OK") {
		t.Fatalf("QUIT: %q", a)
	}
	b.Close()
	<-served

	b2 := startOn(t, d, "--store", "sqlite:state.db", "--data-dir", dir)
	entries, err := b2.sharedStore().Journal(t.Context(), store.JournalQuery{User: demo.Username})
	if err != nil || len(entries) != 1 || entries[0].Outcome != "applied" {
		t.Fatalf("journal after the restart: %+v, %v", entries, err)
	}
}

// storeErrors is popbridge_store_errors_total{op, kind="unavailable"}.
func storeErrors(t *testing.T, b *Bridge, op string) float64 {
	t.Helper()
	families, err := b.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "popbridge_store_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == op && labels["kind"] == "unavailable" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestNoStateNoFile: without --store, sessions that use no stateful
// feature (login, download, delete, QUIT) create no store file.
func TestNoStateNoFile(t *testing.T) {
	dir := t.TempDir()
	d, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	b := startOn(t, d, "--data-dir", dir)
	s, _ := loginHeld(t, b.Addrs().POP3)
	s.cmd(t, "RETR 1", true)
	s.cmd(t, "DELE 1", false)
	if a := s.cmd(t, "QUIT", false); !strings.HasPrefix(a, "+OK") {
		t.Fatalf("QUIT: %q", a)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || b.store.Opened() {
		t.Fatalf("a bridge without stateful features wrote %v (store opened: %v)", entries, b.store.Opened())
	}
}
