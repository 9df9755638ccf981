// Package uidlimport is `popbridge uidl import`: it moves the UIDLs of
// users' old POP3 server into popbridge's UIDL map, so that POP3 clients
// that leave mail on the server download nothing again after the switch
// (docs/migration.md), as Dovecot's pop3-migration plugin does for dsync.
//
// For each `user password` line it logs in to the old POP3 server (UIDL,
// LIST, TOP n 0 for every message) and to the IMAP upstream as a POP3
// session would, matches the messages by header fingerprint
// (uidlmap.MatchAll) and stores the old UIDLs of the messages that match
// one to one. A message whose header is shared (identical copies) is not
// matched: it will be downloaded once more, which is safe, where a wrong
// match could hide a message.
package uidlimport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/uidlmap"
	"github.com/popbridge/popbridge/upstream"
)

// Account is one line of the mailboxes file.
type Account struct {
	User     string
	Password string
	Line     int // in the file, for messages that must not show the password
}

// ParseAccounts reads `user password` lines: the password is the rest of
// the line after the first run of blanks, so it may contain spaces. Blank
// lines and lines starting with # are skipped. Errors name the line, never
// its content.
func ParseAccounts(r io.Reader, name string) ([]Account, error) {
	var out []Account
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		user, pass, ok := strings.Cut(strings.TrimLeft(line, " \t"), " ")
		if !ok {
			user, pass, ok = strings.Cut(strings.TrimLeft(line, " \t"), "\t")
		}
		pass = strings.TrimLeft(pass, " \t")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("%s:%d: want `user password`", name, n)
		}
		if first, dup := seen[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q already on line %d", name, n, user, first)
		}
		seen[user] = n
		out = append(out, Account{User: user, Password: pass, Line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// Options configures Run.
type Options struct {
	// From is the old POP3 server.
	From *Server
	// IMAP fingerprints the users' mailboxes on the upstream; a Backend
	// configured as the bridge is (upstream, per-user mailbox), without a
	// UIDL store.
	IMAP *upstream.Backend
	// Store receives the UIDLs; it also tells which mailboxes are done.
	Store uidlmap.Store
	// DryRun matches and reports but stores nothing.
	DryRun bool
	// Concurrency is how many mailboxes are imported at once; 0 means 4.
	Concurrency int
	// Progress, when set, is called once per finished mailbox.
	Progress func(Report)
}

// Statuses of a Report.
const (
	StatusImported = "imported" // UIDLs stored
	StatusDryRun   = "dry-run"  // matched, nothing stored
	StatusSkipped  = "skipped"  // the map already had UIDLs for the user: done before
	StatusFailed   = "failed"
)

// Report is the outcome for one mailbox; it never holds a password.
type Report struct {
	User    string `json:"user"`
	Mailbox string `json:"mailbox,omitempty"`
	Status  string `json:"status"`
	Error   string `json:"error,omitempty"`
	// POP3 and IMAP count the messages on each side; Matched the old
	// UIDLs stored (or that would be); Unmatched the old messages with
	// no IMAP message of their header; Ambiguous those whose header more
	// than one message shares (identical copies), which get new UIDLs.
	POP3      int `json:"pop3_messages"`
	IMAP      int `json:"imap_messages"`
	Matched   int `json:"matched"`
	Unmatched int `json:"unmatched"`
	Ambiguous int `json:"ambiguous"`
	// Replaced counts the UIDLs popbridge had already given imported
	// messages (it served the mailbox with a store before the import).
	Replaced int `json:"replaced,omitempty"`
}

// Run imports every account, Concurrency at a time, and returns a report
// per account in the order given. It fails only when ctx ends; per-account
// failures are in the reports.
func Run(ctx context.Context, opts Options, accounts []Account) ([]Report, error) {
	n := opts.Concurrency
	if n <= 0 {
		n = 4
	}
	reports := make([]Report, len(accounts))
	var (
		wg       sync.WaitGroup
		progress sync.Mutex
		sem      = make(chan struct{}, n)
	)
	for i, a := range accounts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return reports, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := importOne(ctx, opts, a)
			reports[i] = r
			if opts.Progress != nil {
				progress.Lock()
				opts.Progress(r)
				progress.Unlock()
			}
		}()
	}
	wg.Wait()
	return reports, ctx.Err()
}

// oldMessage is one message of the old server.
type oldMessage struct {
	n    int // message number
	uidl string
	fp   uidlmap.Fingerprint
}

func importOne(ctx context.Context, opts Options, a Account) Report {
	r := Report{User: a.User}
	fail := func(err error) Report {
		r.Status = StatusFailed
		// Neither side's errors carry the password, but be sure (a
		// password of a few characters would only garble the text).
		r.Error = err.Error()
		if len(a.Password) >= 4 {
			r.Error = strings.ReplaceAll(r.Error, a.Password, "***")
		}
		return r
	}
	r.Mailbox = opts.IMAP.MailboxFor(a.User)
	key := uidlmap.Key(a.User, r.Mailbox)
	existing, err := opts.Store.UIDLMap(ctx, key)
	if err != nil {
		return fail(fmt.Errorf("reading the UIDL map: %w", err))
	}
	for _, e := range existing {
		if e.UIDL == uidlmap.ImportMarker {
			// Imported before: a second run resumes after it.
			r.Status = StatusSkipped
			return r
		}
	}
	imap, err := opts.IMAP.Fingerprint(ctx, a.User, a.Password)
	if err != nil {
		var pe *pop3server.Error
		if errors.As(err, &pe) && pe.Code == pop3server.CodeAuth {
			return fail(errors.New("IMAP login refused"))
		}
		return fail(fmt.Errorf("IMAP: %w", err))
	}
	r.IMAP = len(imap.Messages)
	c, err := dialPOP3(ctx, opts.From)
	if err != nil {
		return fail(fmt.Errorf("old server: %w", err))
	}
	defer c.close()
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	old, err := readOld(c, a)
	if err != nil {
		return fail(fmt.Errorf("old server: %w", err))
	}
	r.POP3 = len(old)

	recs, err := match(old, imap, &r, func(n int) (string, error) { return bodyPrefix(c, n) })
	if err != nil {
		return fail(fmt.Errorf("old server: %w", err))
	}
	c.quit()
	if opts.DryRun {
		r.Status = StatusDryRun
		return r
	}
	// The mailbox may have been served with a store already (a test
	// login before the switch): the records the bridge gave the imported
	// messages are parked, so the old UIDLs win and the bridge's stay
	// taken. The marker goes in the same write.
	imported := map[uint32]string{}
	for _, rec := range recs {
		imported[rec.UID] = rec.UIDL
	}
	var put []uidlmap.Record
	for _, e := range existing {
		if u, ok := imported[e.UID]; ok && e.UIDValidity == imap.UIDValidity && u != e.UIDL {
			put = append(put, uidlmap.Parked(e))
			r.Replaced++
		}
	}
	put = append(put, recs...)
	put = append(put, uidlmap.Record{UIDL: uidlmap.ImportMarker, Fingerprint: uidlmap.Fingerprint{Date: time.Now().UTC().Format(time.RFC3339)}})
	if err := opts.Store.PutUIDLs(ctx, key, put); err != nil {
		return fail(fmt.Errorf("storing UIDLs: %w", err))
	}
	r.Status = StatusImported
	return r
}

// match pairs old messages with IMAP messages by header and returns the
// records to store, counting into r. Where a header is shared (generated
// mail whose header fields are all the same), the old messages' body
// prefixes, from body, tell them apart; identical copies stay ambiguous.
func match(old []oldMessage, imap *upstream.MailboxFingerprints, r *Report, body func(n int) (string, error)) ([]uidlmap.Record, error) {
	// Old UIDLs that are unusable or not unique on the old server are
	// never imported: the map's UIDLs must be unique.
	count := map[string]int{}
	for _, m := range old {
		count[m.uidl]++
	}
	prev := make([]uidlmap.Record, 0, len(old))
	for _, m := range old {
		rec := uidlmap.Record{UIDL: m.uidl, Fingerprint: m.fp}
		if count[m.uidl] > 1 || !uidlmap.ValidUIDL(m.uidl) {
			rec.Hash = "" // never matches
		}
		prev = append(prev, rec)
	}
	fps := make([]uidlmap.Fingerprint, len(imap.Messages))
	for i, m := range imap.Messages {
		fps[i] = imap.Fingerprints[m.UID]
	}
	byHash := map[string]int{}
	for _, f := range fps {
		if f.Known() {
			byHash[f.Hash]++
		}
	}
	oldByHash := map[string]int{}
	for _, p := range prev {
		if p.Known() {
			oldByHash[p.Hash]++
		}
	}
	shared := func(p uidlmap.Record) bool {
		return p.Known() && byHash[p.Hash] > 0 && (byHash[p.Hash] > 1 || oldByHash[p.Hash] > 1)
	}
	// Sizes are not compared: servers count them differently (bare LF,
	// mbox headers); the header fields single a message out.
	matches := uidlmap.MatchAll(prev, fps, uidlmap.MatchHeader)
	if body != nil {
		any := false
		for i := range prev {
			if shared(prev[i]) {
				b, err := body(old[i].n)
				if err != nil {
					return nil, err
				}
				prev[i].Body, any = b, true
			}
		}
		if any {
			// Only the shared headers' old records have a body here,
			// and an IMAP body hash is never "": nothing else matches.
			byBody := uidlmap.MatchAll(prev, fps, uidlmap.MatchHeaderBody)
			for j := range matches {
				if matches[j].Prev < 0 && byBody[j].Prev >= 0 {
					matches[j] = byBody[j]
				}
			}
		}
	}
	matchedOld := make([]bool, len(prev))
	var recs []uidlmap.Record
	for i, mt := range matches {
		if mt.Prev < 0 {
			continue
		}
		matchedOld[mt.Prev] = true
		m := imap.Messages[i]
		recs = append(recs, uidlmap.Record{
			UIDL: prev[mt.Prev].UIDL, UIDValidity: imap.UIDValidity, UID: m.UID, Fingerprint: fps[i],
		})
	}
	// Count from the old side: what a client that synced with the old
	// server will see.
	for i, p := range prev {
		switch {
		case matchedOld[i]:
			r.Matched++
		case shared(p):
			r.Ambiguous++
		default:
			r.Unmatched++
		}
	}
	return recs, nil
}

// bodyLines is how many body lines TOP fetches for a body prefix: enough
// to cover uidlmap.BodyPrefix octets of most bodies; a body of more,
// shorter lines gives a prefix that matches nothing, which is safe.
const bodyLines = 20

// bodyPrefix reads message n's body prefix hash with TOP n bodyLines.
func bodyPrefix(c *pop3Client, n int) (string, error) {
	var h string
	err := c.top(n, bodyLines, func(r io.Reader) error {
		br := bufio.NewReader(io.LimitReader(r, 1<<20))
		for {
			line, err := br.ReadSlice('\n')
			if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" && err == nil {
				break // the blank line ending the header
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil {
				return nil // no body
			}
		}
		var err error
		h, err = uidlmap.HashBody(br)
		return err
	})
	if err == nil && h == "" {
		h, err = uidlmap.HashBody(strings.NewReader(""))
	}
	return h, err
}

// readOld logs in to the old server and reads every message's UIDL, size
// and header.
func readOld(c *pop3Client, a Account) ([]oldMessage, error) {
	if err := c.login(a.User, a.Password); err != nil {
		return nil, err
	}
	uidls, err := c.uidls()
	if err != nil {
		return nil, err
	}
	sizes, err := c.sizes()
	if err != nil {
		return nil, err
	}
	out := make([]oldMessage, 0, len(uidls))
	for n := 1; len(out) < len(uidls); n++ {
		id, ok := uidls[n]
		if !ok {
			if n > len(uidls)+len(sizes)+1 {
				return nil, errors.New("UIDL numbers are not 1..N")
			}
			continue
		}
		var fp uidlmap.Fingerprint
		err := c.top(n, 0, func(r io.Reader) error {
			var err error
			fp, err = uidlmap.Parse(r, sizes[n])
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("TOP %d 0: %w", n, err)
		}
		out = append(out, oldMessage{n: n, uidl: id, fp: fp})
	}
	return out, nil
}
