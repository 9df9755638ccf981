package imapscript

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// errEnd ends a session after its last words.
var errEnd = errors.New("end of session")

// session is one client connection.
type session struct {
	srv  *Server
	conn net.Conn
	id   int
	br   *bufio.Reader
	bw   *bufio.Writer

	user     string // logged in as; "" before
	selected string // canonical mailbox name; "" when none
	readOnly bool
	hanging  bool // a Hang step fired: read and record, never answer
}

func newSession(s *Server, nc net.Conn, id int) *session {
	return &session{srv: s, conn: nc, id: id, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 32<<10)}
}

func (ss *session) serve() {
	defer ss.conn.Close()
	switch step, _ := ss.srv.match(Greeting, ""); step {
	case Normal:
		ss.printf("* OK [CAPABILITY %s] imapscript ready", strings.Join(ss.srv.caps, " "))
	case Bye:
		ss.printf("* BYE scripted: not today")
		ss.bw.Flush()
		return
	case Cut:
		return
	case EndlessLine:
		ss.endless("* OK ")
		return
	case HugeLiteral:
		ss.endless("* OK [ALERT] {2000000000}\r\n")
		return
	default: // Hang and anything meaningless here
		ss.hanging = true
	}
	if ss.bw.Flush() != nil {
		return
	}
	for {
		raw, err := readCommand(ss.br, ss.bw)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !ss.hanging {
				ss.printf("* BYE %s", err)
				ss.bw.Flush()
			}
			return
		}
		if err := ss.handle(raw); err != nil {
			ss.bw.Flush()
			return
		}
		if ss.bw.Flush() != nil {
			return
		}
	}
}

// handle records and runs one command.
func (ss *session) handle(raw string) error {
	tag, rest, _ := strings.Cut(raw, " ")
	name, args, _ := strings.Cut(rest, " ")
	name = strings.ToUpper(name)
	if name == "UID" {
		var sub string
		sub, args, _ = strings.Cut(args, " ")
		name += " " + strings.ToUpper(sub)
	}
	ss.srv.record(Command{Session: ss.id, User: ss.user, Tag: tag, Name: name, Args: args, Time: time.Now()})
	if ss.hanging {
		return nil
	}
	if tag == "" || name == "" {
		ss.printf("%s BAD missing command", orStar(tag))
		return nil
	}
	toks, err := tokenize(args)
	if err != nil {
		ss.printf("%s BAD %v", tag, err)
		return nil
	}
	p := pointOf(name, toks)
	user := ss.user
	if p == Login {
		user = loginUser(name, toks)
	}
	step, text := ss.srv.match(p, user)
	switch step {
	case Hang:
		ss.hanging = true
		return nil
	case Bye:
		ss.printf("* BYE scripted: shutting down")
		return errEnd
	case No:
		ss.printf("%s NO %s", tag, orDefault(text, "[UNAVAILABLE] scripted failure"))
		return nil
	case Bad:
		ss.printf("%s BAD %s", tag, orDefault(text, "scripted error"))
		return nil
	case Cut:
		return errEnd
	case EndlessLine:
		ss.bw.Flush()
		ss.endless("* OK ")
		return errEnd
	case HugeLiteral:
		ss.bw.Flush()
		ss.endless("* OK [ALERT] {2000000000}\r\n")
		return errEnd
	}
	if err := ss.dispatch(tag, name, toks, step); err != nil {
		return err
	}
	switch step {
	case CutAfter:
		return errEnd
	case ChangeUIDValidity:
		ss.srv.mu.Lock()
		if mb := ss.boxLocked(); mb != nil {
			mb.uidValidity++
		}
		ss.srv.mu.Unlock()
	}
	return nil
}

func orStar(tag string) string { return orDefault(tag, "*") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// pointOf classifies a command for Rules.
func pointOf(name string, toks []token) Point {
	switch strings.TrimPrefix(name, "UID ") {
	case "CAPABILITY":
		return Capability
	case "ID":
		return ID
	case "LOGIN", "AUTHENTICATE":
		return Login
	case "SELECT", "EXAMINE":
		return Select
	case "STATUS":
		return Status
	case "FETCH":
		if len(toks) > 1 && hasBodyItem(toks[1]) {
			return FetchBody
		}
		return List
	case "STORE":
		return Store
	case "SEARCH":
		return Search
	case "EXPUNGE":
		if name == "UID EXPUNGE" {
			return UIDExpunge
		}
		return Expunge
	case "CLOSE":
		return Expunge
	case "COPY":
		return Copy
	case "MOVE":
		return Move
	case "CREATE":
		return Create
	case "NOOP":
		return Noop
	case "LOGOUT":
		return Logout
	}
	return OtherCommand
}

func hasBodyItem(t token) bool {
	items := []token{t}
	if t.isList {
		items = t.list
	}
	for _, it := range items {
		if strings.HasPrefix(strings.ToUpper(it.text), "BODY[") || strings.HasPrefix(strings.ToUpper(it.text), "BODY.PEEK[") {
			return true
		}
	}
	return false
}

// loginUser is the user a LOGIN or AUTHENTICATE PLAIN (with initial
// response) names, for Rules limited to a user.
func loginUser(name string, toks []token) string {
	if name == "LOGIN" && len(toks) > 0 {
		return toks[0].text
	}
	if name == "AUTHENTICATE" && len(toks) == 2 {
		if _, user, _, ok := decodePlain(toks[1].text); ok {
			return user
		}
	}
	return ""
}

func (ss *session) printf(format string, args ...any) {
	fmt.Fprintf(ss.bw, format, args...)
	ss.bw.WriteString("\r\n")
}

// endless writes prefix and then filler until the client goes away.
func (ss *session) endless(prefix string) {
	ss.bw.WriteString(prefix)
	filler := bytes.Repeat([]byte("x"), 32<<10)
	for {
		if _, err := ss.bw.Write(filler); err != nil {
			return
		}
	}
}

// boxLocked is the selected mailbox; srv.mu must be held.
func (ss *session) boxLocked() *mailbox {
	if ss.selected == "" || ss.user == "" {
		return nil
	}
	a := ss.srv.accounts[ss.user]
	if a == nil {
		return nil
	}
	return a.boxes[ss.selected]
}

func (ss *session) dispatch(tag, name string, toks []token, step Step) error {
	needAuth := func() bool {
		if ss.user == "" {
			ss.printf("%s BAD not logged in", tag)
			return false
		}
		return true
	}
	needSelected := func() bool {
		if !needAuth() {
			return false
		}
		if ss.selected == "" {
			ss.printf("%s BAD no mailbox selected", tag)
			return false
		}
		return true
	}
	switch name {
	case "CAPABILITY":
		ss.printf("* CAPABILITY %s", strings.Join(ss.srv.caps, " "))
		ss.printf("%s OK done", tag)
	case "NOOP":
		ss.printf("%s OK done", tag)
	case "ID":
		if !ss.srv.hasCap("ID") {
			ss.printf("%s BAD unknown command", tag)
			return nil
		}
		ss.printf(`* ID ("name" "imapscript")`)
		ss.printf("%s OK done", tag)
	case "LOGIN":
		if len(toks) != 2 {
			ss.printf("%s BAD LOGIN user password", tag)
			return nil
		}
		ss.login(tag, toks[0].text, toks[1].text)
	case "AUTHENTICATE":
		return ss.authenticate(tag, toks)
	case "LOGOUT":
		ss.printf("* BYE logging out")
		ss.printf("%s OK done", tag)
		return errEnd
	case "SELECT", "EXAMINE":
		if needAuth() {
			ss.selectBox(tag, name == "EXAMINE", toks)
		}
	case "STATUS":
		if needAuth() {
			ss.status(tag, toks)
		}
	case "CREATE":
		if needAuth() {
			ss.create(tag, toks)
		}
	case "UNSELECT":
		if needSelected() {
			ss.selected = ""
			ss.printf("%s OK done", tag)
		}
	case "FETCH", "UID FETCH":
		if needSelected() {
			return ss.fetch(tag, name == "UID FETCH", toks, step)
		}
	case "STORE", "UID STORE":
		if needSelected() {
			ss.store(tag, name == "UID STORE", toks)
		}
	case "SEARCH", "UID SEARCH":
		if needSelected() {
			ss.search(tag, name == "UID SEARCH", toks)
		}
	case "EXPUNGE", "CLOSE":
		if needSelected() {
			ss.expunge(tag, name == "EXPUNGE", nil)
			if name == "CLOSE" {
				ss.selected = ""
			}
		}
	case "UID EXPUNGE":
		if !ss.srv.hasCap("UIDPLUS") {
			ss.printf("%s BAD UID EXPUNGE needs UIDPLUS", tag)
			return nil
		}
		if needSelected() {
			if len(toks) != 1 {
				ss.printf("%s BAD UID EXPUNGE set", tag)
				return nil
			}
			set, err := parseSet(toks[0].text)
			if err != nil {
				ss.printf("%s BAD %v", tag, err)
				return nil
			}
			ss.expunge(tag, true, set)
		}
	case "COPY", "UID COPY", "MOVE", "UID MOVE":
		if strings.HasSuffix(name, "MOVE") && !ss.srv.hasCap("MOVE") {
			ss.printf("%s BAD unknown command", tag)
			return nil
		}
		if needSelected() {
			ss.copyMove(tag, strings.HasPrefix(name, "UID "), strings.HasSuffix(name, "MOVE"), toks)
		}
	default:
		ss.printf("%s BAD unknown command", tag)
	}
	return nil
}

func (ss *session) login(tag, user, pass string) {
	if ss.user != "" {
		ss.printf("%s BAD already logged in", tag)
		return
	}
	ss.srv.mu.Lock()
	a, ok := ss.srv.accounts[user]
	ok = ok && a.password == pass
	ss.srv.mu.Unlock()
	if !ok {
		ss.printf("%s NO [AUTHENTICATIONFAILED] Authentication failed.", tag)
		return
	}
	ss.user = user
	ss.printf("%s OK [CAPABILITY %s] Logged in", tag, strings.Join(ss.srv.caps, " "))
}

// authenticate handles AUTHENTICATE PLAIN, with or without an initial
// response.
func (ss *session) authenticate(tag string, toks []token) error {
	if len(toks) == 0 || !strings.EqualFold(toks[0].text, "PLAIN") {
		ss.printf("%s NO unsupported mechanism", tag)
		return nil
	}
	resp := ""
	if len(toks) > 1 {
		resp = toks[1].text
	} else {
		ss.printf("+ ")
		if err := ss.bw.Flush(); err != nil {
			return err
		}
		line, err := readLine(ss.br)
		if err != nil {
			return err
		}
		resp = line
	}
	if resp == "*" {
		ss.printf("%s BAD cancelled", tag)
		return nil
	}
	_, user, pass, ok := decodePlain(resp)
	if !ok {
		ss.printf("%s BAD invalid response", tag)
		return nil
	}
	ss.login(tag, user, pass)
	return nil
}

func decodePlain(b64 string) (authz, user, pass string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", "", "", false
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
