package pop3server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
)

// Credential limits: generous for real users, small enough that nothing a
// client sends can blow up the upstream command.
const (
	maxUsernameLen = 255
	maxPasswordLen = 512
)

var (
	errPlaintextDisallowed = &Error{Code: CodeAuth, Text: "Plaintext authentication disallowed on non-secure (SSL/TLS) connections"}
)

func (c *conn) handleUser(arg string) (result, error) {
	if !c.plaintextOK {
		return c.refusePlaintext()
	}
	if arg == "" {
		return c.writeBad("syntax error: USER name"), nil
	}
	if !validUsername(arg) {
		// "USER name password" on one line (a client or a user that put
		// the password in the wrong field) must not make the password a
		// user name: refused here, never stored, never logged as typed.
		c.stats.Username = logUsername(arg)
		return c.writeBad("invalid user name"), nil
	}
	c.user = arg
	return c.writeOK(""), nil
}

func (c *conn) handlePass(arg string) (result, error) {
	if !c.plaintextOK {
		return c.refusePlaintext()
	}
	if c.user == "" {
		return c.writeBad("USER first"), nil
	}
	user := c.user
	c.user = ""
	return c.login(user, arg)
}

func (c *conn) refusePlaintext() (result, error) {
	c.writeErr(errPlaintextDisallowed)
	return resBad, nil
}

func (c *conn) handleAuth(arg string) (result, error) {
	args, ok := splitArgs(arg)
	if !ok || len(args) > 2 {
		return c.writeBad("syntax error: AUTH mechanism [initial-response]"), nil
	}
	if len(args) == 0 {
		// Outlook sends a bare AUTH to list the mechanisms.
		c.writeOK("")
		if c.plaintextOK {
			c.w.WriteString("PLAIN\r\nLOGIN\r\n")
		}
		c.w.WriteString(".\r\n")
		return resOK, nil
	}
	srv, creds := newSASLServer(args[0])
	if srv == nil {
		return c.mechanismNotOffered(""), nil
	}
	if !c.plaintextOK {
		return c.refusePlaintext()
	}

	var resp []byte
	if len(args) == 2 {
		var ok bool
		if resp, ok = decodeSASL(args[1]); !ok {
			return c.writeBad("invalid base64"), nil
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			return c.loginFailed("", err)
		}
		if done {
			break
		}
		c.w.WriteString("+ " + base64.StdEncoding.EncodeToString(challenge) + "\r\n")
		if err := c.w.Flush(); err != nil {
			return resErr, err
		}
		line, err := c.readLine()
		if err != nil {
			c.endOnReadError(err)
			return resErr, errClose
		}
		if line == "*" {
			return c.writeErr(&Error{Text: "authentication cancelled"}), nil
		}
		var ok bool
		if resp, ok = decodeSASL(line); !ok {
			return c.writeBad("invalid base64"), nil
		}
	}
	return c.login(creds.user, creds.pass)
}

// saslCredentials is what a finished SASL exchange yields.
type saslCredentials struct{ user, pass string }

// newSASLServer returns the server side of mechanism mech (any case) and
// where it leaves the credentials once Next reports done; srv is nil for
// a mechanism we do not offer.
func newSASLServer(mech string) (srv sasl.Server, creds *saslCredentials) {
	creds = new(saslCredentials)
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		srv = sasl.NewPlainServer(func(identity, username, password string) error {
			// No proxy authorization: the bridge logs in as the user.
			if identity != "" && identity != username {
				return errAuthzid
			}
			creds.user, creds.pass = username, password
			return nil
		})
	case sasl.Login:
		srv = &loginServer{done: func(username, password string) { creds.user, creds.pass = username, password }}
	default:
		return nil, nil
	}
	return srv, creds
}

// decodeSASL decodes a client response: strict base64 (RFC 4648 alphabet,
// canonical padding, nothing else), "=" for empty.
func decodeSASL(s string) ([]byte, bool) {
	if s == "=" {
		return []byte{}, true
	}
	// encoding/base64 skips CR and LF anywhere, even in Strict mode: a
	// response is one line, so those are refused here with everything else
	// outside the alphabet.
	for i := 0; i < len(s); i++ {
		if !isBase64Char(s[i]) {
			return nil, false
		}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, false
	}
	return b, true
}

func isBase64Char(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '+' || c == '/' || c == '='
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl only has as a client.
type loginServer struct {
	step     int
	username string
	done     func(username, password string)
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // the initial response is the username
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		l.done(l.username, string(response))
		return nil, true, nil
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// validCredential refuses what must never reach the upstream: empty or
// over-long values and control octets (NUL, CR, LF and the rest of C0,
// and DEL). Other octets pass: a legacy client may send a password in
// Latin-1, and the upstream sends it as a literal.
func validCredential(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// validUsername is validCredential for the username, which also ends up in
// logs and IMAP commands as text: it must be UTF-8 without C1 controls
// (U+0080..U+009F, which some terminals take as escape sequences) and
// without white space. A space is how "USER name password" would smuggle
// a password into the user name (and the log); no mail system's user
// names contain one (Dovecot's auth_username_chars has none).
func validUsername(s string) bool {
	if !validCredential(s, maxUsernameLen) || !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, forbiddenInUsername) < 0
}

func forbiddenInUsername(r rune) bool {
	return r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || unicode.IsSpace(r)
}

// checkCredentials is the gate before Backend.Login.
func checkCredentials(user, pass string) error {
	if !validUsername(user) || !validCredential(pass, maxPasswordLen) {
		return errBadCredentialBytes
	}
	return nil
}

// refusedMark ends the logged form of a refused username.
const refusedMark = "[refused]"

// logUsername is the username as reported to the Observer: as typed when
// it is valid. A refused one is never logged as typed: what follows its
// first forbidden character (the password, in "USER name password"; a
// control sequence) is dropped, the rest is cut to 64 octets, and
// refusedMark is appended, so no secret, escape sequence or megabyte
// reaches a log line whatever the log format.
func logUsername(s string) string {
	if s == "" || validUsername(s) {
		return s
	}
	if i := strings.IndexFunc(s, forbiddenInUsername); i >= 0 {
		s = s[:i]
	}
	s = strings.ToValidUTF8(s, "")
	const max = 64
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s + refusedMark
}

// login passes the credentials to the backend and enters TRANSACTION.
func (c *conn) login(user, pass string) (result, error) {
	c.stats.Username = logUsername(user)
	if err := checkCredentials(user, pass); err != nil {
		return c.loginFailed(user, err)
	}
	// The client address's penalty is served before the upstream hears of
	// the attempt: an address that keeps failing reaches the upstream
	// ever more slowly, whatever it does between attempts.
	if !c.sleep(c.srv.penalties.current(c.info.RemoteAddr.Addr())) || !c.srv.beginLogin(c) {
		// Evicted (or shut down) while waiting: say so, the same way a
		// read would have.
		c.endOnReadError(os.ErrDeadlineExceeded)
		return resErr, errClose
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.srv.opts.LoginTimeout)
	mbox, err := c.srv.backend.Login(ctx, c.info, user, pass)
	cancel()
	if err != nil {
		c.srv.endLogin(c, "")
		if e := clientError(err); e.Code != CodeAuth {
			// The upstream is unreachable or failing: not the client's
			// fault, so no failure is counted and no delay applied.
			c.srv.opts.Observer.LoginAttempted(c.info, user, err)
			c.srv.opts.Logger.Warn().Err(err).Str("session", c.info.SessionID).Msg("login failed upstream")
			return c.writeErr(e), nil
		}
		return c.loginFailed(user, err)
	}
	if !c.srv.endLogin(c, user) {
		mbox.Close()
		c.srv.opts.Observer.LoginAttempted(c.info, user, ErrUserIPLimit)
		return c.writeErr(ErrUserIPLimit), nil
	}
	if c.srv.opts.LockSession {
		ctx, cancel := context.WithTimeout(c.ctx, c.srv.opts.LoginTimeout)
		unlock, err := c.srv.lockUser(ctx, user)
		cancel()
		if err != nil {
			mbox.Close()
			c.srv.opts.Observer.LoginAttempted(c.info, user, err)
			if !errors.Is(err, ErrInUse) {
				c.srv.opts.Logger.Warn().Err(err).Str("session", c.info.SessionID).Msg("session lock failed")
			}
			return c.writeErr(clientError(err)), nil
		}
		c.unlock = unlock
	}
	c.srv.opts.Observer.LoginAttempted(c.info, user, nil)
	c.mbox = mbox
	c.msgs = mbox.Messages()
	c.deleted = make([]bool, len(c.msgs))
	c.retrieved = make([]bool, len(c.msgs))
	c.state = stateTransaction
	c.badCommands = 0
	c.stats.LoggedIn = true
	c.stats.Messages, c.stats.MaildropSz = c.liveTotals()
	return c.writeOK("Logged in."), nil
}

// sleep waits d unless the connection ends first (shutdown, eviction);
// false means it ended.
func (c *conn) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// loginFailed answers a refused login after the failure delay, the same
// way whatever the reason, and closes after too many failures.
func (c *conn) loginFailed(user string, cause error) (result, error) {
	if !errors.Is(cause, ErrAuthFailed) {
		cause = ErrAuthFailed.Wrap(cause)
	}
	c.srv.opts.Observer.LoginAttempted(c.info, logUsername(user), cause)
	c.sleep(c.srv.penalties.fail(c.info.RemoteAddr.Addr()))
	c.writeErr(ErrAuthFailed)
	c.loginFailures++
	if max := c.srv.opts.MaxLoginFailures; max > 0 && c.loginFailures >= max {
		c.stats.Result = "limit"
		c.w.Flush()
		return resErr, errClose
	}
	return resErr, nil
}

// mechanismNotOffered answers APOP and SASL mechanisms other than PLAIN and
// LOGIN. The bridge never holds a password, so it cannot check a
// challenge-response (APOP, CRAM-MD5, DIGEST-MD5, SCRAM): the client must
// send the password itself, over TLS. The failed-login line says so, so an
// admin sees why a client that "has the right password" is refused.
func (c *conn) mechanismNotOffered(user string) result {
	c.srv.opts.Observer.LoginAttempted(c.info, logUsername(user), ErrAuthFailed.Wrap(ErrMechanismNotOffered))
	return c.writeBad("unsupported authentication mechanism")
}

// handleApop refuses APOP (see mechanismNotOffered). CAPA never offers it
// and the greeting carries no timestamp, so only a client configured to
// insist on it gets here.
func (c *conn) handleApop(arg string) (result, error) {
	user, _, _ := strings.Cut(arg, " ")
	return c.mechanismNotOffered(user), nil
}

func (c *conn) handleStls(arg string) (result, error) {
	cfg := c.srv.opts.TLSConfig
	if cfg == nil {
		return c.writeBad("unknown command"), nil
	}
	if c.info.TLS {
		return c.writeBad("TLS already active"), nil
	}
	if arg != "" {
		return c.writeBad("STLS takes no argument"), nil
	}
	c.writeOK("Begin TLS negotiation now.")
	if err := c.w.Flush(); err != nil {
		return resErr, err
	}
	// Whatever the client pipelined after STLS was sent in clear and may
	// have been injected; it is dropped, never executed (CVE-2011-0411).
	c.r.Discard(c.r.Buffered())
	tc := tls.Server(c.raw, cfg)
	c.raw.SetDeadline(c.preLoginDeadline(c.srv.opts.PreLoginIdleTimeout))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.stats.Result = "tls-error"
		return resErr, errClose
	}
	c.raw.SetDeadline(time.Time{})
	c.nc = tc
	c.r.Reset(tc)
	c.info.TLS = true
	c.plaintextOK = true
	c.user = "" // a USER given in clear is forgotten
	return resOK, nil
}
