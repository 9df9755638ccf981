package upstream

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Idle sessions (docs/design.md, "Idle sessions"): a logged-in POP3 client
// is silent most of the time, and while it is, its go-imap client holds
// about 14 KiB for nothing: a 4 KiB bufio.Reader and a 4 KiB bufio.Writer
// (imapclient.New allocates them, they cannot be sized), the capability
// map, channels, and its reader goroutine's stack. So after
// pop3server.Options.ReleaseAfter of silence the client is released and
// the stream it read is kept: the TCP (and TLS) connection with the
// upstream's logged-in, selected session. The next command that needs the
// upstream starts a new client on that stream; the upstream sees nothing
// of it, no password is kept, and OAuth2 sessions work the same. A session
// that ends released writes its LOGOUT without a client (logout).
//
// Releasing stops go-imap's reader, which is blocked reading the stream,
// with a past read deadline (progressConn.interrupt); go-imap then closes
// its connection, which handedConn ignores until reopen. The stream is
// reusable only if the reader stopped between two responses: the guard
// saw a whole line end outside any literal. Anything else (the server
// wrote at that very moment) retires the link like any failure, and the
// session answers its next upstream command with -ERR [SYS/TEMP].
// crypto/tls keeps a connection usable after a temporary read error
// (errReleased is one), with any partial record buffered.

// releaseWait bounds the wait for go-imap's reader to stop; it stops at
// once unless something of ours was outstanding, which the caller rules
// out.
const releaseWait = 5 * time.Second

// release stops l's client and forgets it, keeping the stream for resume.
// Nothing of ours may be outstanding. On an error the stream's state is
// unknown: the caller retires the link.
func (l *link) release() error {
	c := l.client
	select {
	case <-c.Closed():
		return errors.New("release: upstream client had already ended")
	default:
	}
	l.raw.interrupt()
	t := time.NewTimer(releaseWait)
	defer t.Stop()
	select {
	case <-c.Closed():
	case <-t.C:
		l.raw.reopen()
		return errors.New("release: upstream client did not stop")
	}
	switch {
	case !l.raw.reopen():
		return errors.New("release: upstream client ended for another reason")
	case !l.guard.lineEnd:
		return errors.New("release: upstream was sending a response")
	}
	l.client = nil
	return nil
}

// resume starts a client on the stream a released one read. Its greeting
// is ours: PREAUTH, with the capabilities after login, so go-imap takes
// the connection as authenticated without a round trip. go-imap checks no
// state before SELECT, UID FETCH, STORE or EXPUNGE, and keeps a selected
// mailbox's counters only in the selected state, which nothing of ours
// reads. Whatever the server sent while the client was released (a BYE,
// or the end of the connection) is the new client's to read.
func (l *link) resume(caps imap.CapSet) error {
	greeting := "* PREAUTH [CAPABILITY " + joinCaps(caps) + "] popbridge upstream resumed\r\n"
	return l.start(io.MultiReader(strings.NewReader(greeting), l.guard))
}

// logout ends the upstream session of a released link without starting a
// client for it (a QUIT with nothing to apply, a client gone): LOGOUT on
// the stream, and its answer read up to the tagged line.
func (l *link) logout() error {
	if _, err := io.WriteString(l.conn, "P9 LOGOUT\r\n"); err != nil {
		return err
	}
	br := bufio.NewReaderSize(l.guard, 512)
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if rest, ok := cutPrefixFold(line, "P9 "); ok {
			if _, ok := cutPrefixFold(rest, "OK"); ok {
				return nil
			}
			return &statusError{line: truncate(line)}
		}
	}
}

// maxCapSets bounds capSets: a popbridge serves the users of a few
// upstream servers, and a server whose capabilities vary per login (none
// known) only stops being shared.
const maxCapSets = 64

// capSets interns the capabilities sessions learn after login. Every
// session of one server gets the same forty or so, and go-imap's map of
// them (about 2.3 KiB) is the largest thing a released session would
// otherwise keep: it needs them for its checks and its resume. The sets
// are never modified.
type capSets struct {
	mu   sync.Mutex
	sets map[string]imap.CapSet // by joinCaps
}

// intern returns the shared set equal to caps, caps itself when it is the
// first of its kind or the table is full, nil for nil.
func (cs *capSets) intern(caps imap.CapSet) imap.CapSet {
	if caps == nil {
		return nil
	}
	key := joinCaps(caps)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if shared, ok := cs.sets[key]; ok {
		return shared
	}
	if len(cs.sets) < maxCapSets {
		if cs.sets == nil {
			cs.sets = make(map[string]imap.CapSet)
		}
		cs.sets[key] = caps
	}
	return caps
}
