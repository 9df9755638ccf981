package pop3server

import (
	"context"
	"strconv"
	"strings"
	"time"
)

type command struct {
	states  state
	handler func(c *conn, arg string) (result, error)
}

// commands maps each verb to the states it is valid in and its handler.
var commands = map[string]command{
	"CAPA": {stateAuthorization | stateTransaction, (*conn).handleCapa},
	"QUIT": {stateAuthorization | stateTransaction, (*conn).handleQuit},
	"NOOP": {stateTransaction, (*conn).handleNoop},
	"USER": {stateAuthorization, (*conn).handleUser},
	"PASS": {stateAuthorization, (*conn).handlePass},
	"AUTH": {stateAuthorization, (*conn).handleAuth},
	"APOP": {stateAuthorization, (*conn).handleApop},
	"STLS": {stateAuthorization, (*conn).handleStls},
	"STAT": {stateTransaction, (*conn).handleStat},
	"LIST": {stateTransaction, (*conn).handleList},
	"UIDL": {stateTransaction, (*conn).handleUidl},
	"RETR": {stateTransaction, (*conn).handleRetr},
	"TOP":  {stateTransaction, (*conn).handleTop},
	"DELE": {stateTransaction, (*conn).handleDele},
	"RSET": {stateTransaction, (*conn).handleRset},
}

// parseCommand splits a command line into its upper-cased verb and the
// rest of the line (the argument string, which PASS takes verbatim).
func parseCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	if len(verb) > 4 || !isLetters(verb) {
		// Every POP3 verb is 3 or 4 ASCII letters; don't upper-case junk
		// (ToUpper would turn invalid UTF-8 into U+FFFD).
		return "", arg
	}
	return strings.ToUpper(verb), arg
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// splitArgs splits space-separated arguments, refusing empty ones.
func splitArgs(arg string) ([]string, bool) {
	if arg == "" {
		return nil, true
	}
	parts := strings.Split(arg, " ")
	for _, p := range parts {
		if p == "" {
			return nil, false
		}
	}
	return parts, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseNumber parses a non-negative decimal, saturating instead of
// overflowing; ok is false for anything but digits.
func parseNumber(s string) (n int, ok bool) {
	if !isDigits(s) {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 1<<31 - 1, true // only a range error is possible here
	}
	return int(v), true
}

// message resolves a message-number argument. It writes the -ERR itself
// when the number is unusable.
func (c *conn) message(s string) (int, result, bool) {
	n, ok := parseNumber(s)
	if !ok {
		return 0, c.writeBad("invalid message number"), false
	}
	if n < 1 || n > len(c.msgs) {
		return 0, c.writeErr(ErrNoSuchMessage), false
	}
	if c.deleted[n-1] {
		return 0, c.writeErr(&Error{Text: "message " + strconv.Itoa(n) + " already deleted"}), false
	}
	return n, resOK, true
}

func (c *conn) handleCapa(arg string) (result, error) {
	if arg != "" {
		return c.writeBad("CAPA takes no argument"), nil
	}
	c.w.WriteString("+OK Capability list follows\r\n")
	c.w.WriteString("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n")
	if c.state == stateAuthorization {
		if c.plaintextOK {
			c.w.WriteString("USER\r\nSASL PLAIN LOGIN\r\n")
		}
		if c.srv.opts.TLSConfig != nil && !c.info.TLS {
			c.w.WriteString("STLS\r\n")
		}
	}
	expire := c.srv.opts.Expire
	if e, ok := c.mbox.(Expirer); ok {
		expire = e.Expire()
	}
	c.w.WriteString("EXPIRE " + expire + "\r\n")
	c.w.WriteString("IMPLEMENTATION " + c.srv.opts.Implementation + "\r\n.\r\n")
	return resOK, nil
}

func (c *conn) handleNoop(arg string) (result, error) {
	if arg != "" {
		return c.writeBad("NOOP takes no argument"), nil
	}
	return c.writeOK(""), nil
}

func (c *conn) handleQuit(arg string) (result, error) {
	if c.state == stateAuthorization {
		c.stats.Result = "quit"
		c.writeOK("popbridge signing off")
		c.w.Flush()
		return resOK, errClose
	}
	c.state = stateUpdate
	marks := Marks{}
	for i := range c.msgs {
		if c.deleted[i] {
			marks.Deleted = append(marks.Deleted, i+1)
		}
		if c.retrieved[i] {
			marks.Retrieved = append(marks.Retrieved, i+1)
		}
	}
	// A QUIT that arrived completes its update even while the server
	// drains, hence a context of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := resOK
	err := c.mbox.Update(ctx, marks)
	// The maildrop is done with: the lock goes before the answer (RFC
	// 1939 releases it in the UPDATE state), so a client that logs in
	// again as soon as it reads the answer is not refused [IN-USE].
	c.releaseLock()
	if err != nil {
		c.stats.Result = "update-failed"
		c.srv.opts.Logger.Warn().Err(err).Str("session", c.info.SessionID).Msg("update failed")
		res = c.writeErr(ErrUpdateFailed)
	} else {
		c.stats.Result = "quit"
		c.writeOK("popbridge signing off")
	}
	c.w.Flush()
	return res, errClose
}

func (c *conn) handleStat(arg string) (result, error) {
	if arg != "" {
		return c.writeBad("STAT takes no argument"), nil
	}
	n, size := c.liveTotals()
	return c.writeOK("%d %d", n, size), nil
}

func (c *conn) liveTotals() (n int, size int64) {
	for i, m := range c.msgs {
		if !c.deleted[i] {
			n++
			size += m.Size
		}
	}
	return n, size
}

func (c *conn) handleList(arg string) (result, error) {
	return c.listing(arg, func(i int) string { return strconv.FormatInt(c.msgs[i].Size, 10) })
}

func (c *conn) handleUidl(arg string) (result, error) {
	return c.listing(arg, func(i int) string { return c.msgs[i].UIDL })
}

// listing answers LIST and UIDL, with or without a message number.
func (c *conn) listing(arg string, value func(i int) string) (result, error) {
	args, ok := splitArgs(arg)
	if !ok || len(args) > 1 {
		return c.writeBad("syntax error"), nil
	}
	if len(args) == 1 {
		n, res, ok := c.message(args[0])
		if !ok {
			return res, nil
		}
		return c.writeOK("%d %s", n, value(n-1)), nil
	}
	n, size := c.liveTotals()
	c.writeOK("%d messages (%d octets)", n, size)
	var num [20]byte
	for i := range c.msgs {
		if c.deleted[i] {
			continue
		}
		c.w.Write(strconv.AppendInt(num[:0], int64(i+1), 10))
		c.w.WriteByte(' ')
		c.w.WriteString(value(i))
		c.w.WriteString("\r\n")
	}
	c.w.WriteString(".\r\n")
	return resOK, nil
}

func (c *conn) handleRetr(arg string) (result, error) {
	args, ok := splitArgs(arg)
	if !ok || len(args) != 1 {
		return c.writeBad("syntax error: RETR msg"), nil
	}
	n, res, ok := c.message(args[0])
	if !ok {
		return res, nil
	}
	body, err := c.mbox.Retrieve(c.ctx, n)
	if err != nil {
		return c.backendError("RETR", err), nil
	}
	c.writeOK("%d octets", c.msgs[n-1].Size)
	if err := c.writeBody(body); err != nil {
		return resErr, err
	}
	c.retrieved[n-1] = true
	c.stats.Retr++
	c.hintPipelined()
	return resOK, nil
}

func (c *conn) handleTop(arg string) (result, error) {
	args, ok := splitArgs(arg)
	if !ok || len(args) != 2 {
		return c.writeBad("syntax error: TOP msg lines"), nil
	}
	lines, ok := parseNumber(args[1])
	if !ok {
		return c.writeBad("invalid line count"), nil
	}
	n, res, ok := c.message(args[0])
	if !ok {
		return res, nil
	}
	body, err := c.mbox.Top(c.ctx, n, lines)
	if err != nil {
		return c.backendError("TOP", err), nil
	}
	c.writeOK("")
	if err := c.writeBody(body); err != nil {
		return resErr, err
	}
	c.stats.Top++
	c.hintPipelined()
	return resOK, nil
}

func (c *conn) handleDele(arg string) (result, error) {
	args, ok := splitArgs(arg)
	if !ok || len(args) != 1 {
		return c.writeBad("syntax error: DELE msg"), nil
	}
	n, res, ok := c.message(args[0])
	if !ok {
		return res, nil
	}
	c.deleted[n-1] = true
	return c.writeOK("message %d deleted", n), nil
}

func (c *conn) handleRset(arg string) (result, error) {
	if arg != "" {
		return c.writeBad("RSET takes no argument"), nil
	}
	// Like Dovecot, RSET also forgets the downloads: they no longer count
	// for --mark-seen or on-download, so RSET undoes everything.
	clear(c.deleted)
	clear(c.retrieved)
	n, size := c.liveTotals()
	return c.writeOK("maildrop has %d messages (%d octets)", n, size), nil
}
