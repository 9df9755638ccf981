package upstream

import (
	"strconv"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testing/imapscript"
)

// startFake is the scripted IMAP server's raw mode (imapscript.Raw) with
// the usual script, for what imapmemserver cannot do: stalls, odd
// greetings, STARTTLS misbehaviour. handle gets each command line (tag and
// rest split) and writes the responses; returning false closes the
// connection.
func startFake(t *testing.T, greeting string, handle func(c *imapscript.RawConn, tag, cmd string) bool) *imapscript.Raw {
	t.Helper()
	return imapscript.NewRaw(t, nil, imapscript.Serve(greeting, handle))
}

// rawURL is the upstream URL of a raw scripted server.
func rawURL(s *imapscript.Raw) *URL { return &URL{Scheme: SchemeInsecure, Host: s.Addr()} }

// basicIMAP answers the commands of a login to a mailbox with one message
// of size octets. handled is false for other commands; keep is false
// after LOGOUT.
func basicIMAP(c *imapscript.RawConn, tag, cmd string, size int) (handled, keep bool) {
	up := strings.ToUpper(cmd)
	switch {
	case strings.HasPrefix(up, "CAPABILITY"):
		c.Send("* CAPABILITY IMAP4rev1 AUTH=PLAIN", tag+" OK done")
	case strings.HasPrefix(up, "LOGIN "):
		c.Send(tag + " OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in")
	case strings.HasPrefix(up, "SELECT "):
		c.Send("* 1 EXISTS", "* OK [UIDVALIDITY 7] ok", "* OK [UIDNEXT 2] ok", tag+" OK [READ-WRITE] selected")
	case strings.HasPrefix(up, "UID FETCH 1:* "):
		c.Send("* 1 FETCH (UID 1 RFC822.SIZE "+strconv.Itoa(size)+" FLAGS ())", tag+" OK done")
	case strings.HasPrefix(up, "LOGOUT"):
		c.Send("* BYE bye", tag+" OK bye")
		return true, false
	case strings.HasPrefix(up, "NOOP"):
		c.Send(tag + " OK noop")
	default:
		return false, true
	}
	return true, true
}
