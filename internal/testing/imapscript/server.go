// Package imapscript is a scripted IMAP4rev1 server for tests: enough of RFC
// 3501 (with UIDPLUS, MOVE and ID, each optional) to serve popbridge, plus
// Rules that make it misbehave in ways a real server rarely does — hang at
// the greeting, at LOGIN, at SELECT or in the middle of a literal; say BYE
// mid-session; answer NO to UID EXPUNGE; drop the connection between UID
// STORE and UID EXPUNGE; change UIDVALIDITY behind a session's back; send a
// literal longer than announced or a line that never ends.
//
// Raw is its raw mode, where the test writes the conversation itself: the
// phase before login, STARTTLS and implicit TLS, hostile greetings.
//
// It records every command it receives, so a test can assert what the
// client sent (say, never an EXPUNGE without UID), and its mailboxes can be
// inspected and changed directly. It listens on 127.0.0.1 only, speaks no
// TLS, and numbers messages per mailbox: a session is not told of other
// sessions' expunges, which popbridge, using UIDs only, must not care about.
package imapscript

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultCaps are the capabilities offered when Options.Caps is nil.
var DefaultCaps = []string{"IMAP4rev1", "UIDPLUS", "MOVE", "ID"}

// Options configures a Server.
type Options struct {
	// Caps are the capabilities announced in the greeting and after login
	// (IMAP4rev1 should be among them). nil means DefaultCaps; leave out
	// UIDPLUS or MOVE to test the fallbacks, and the server refuses those
	// commands too.
	Caps []string
	// UIDValidity of mailboxes created from now on; default 1000.
	UIDValidity uint32
}

// Command is one command the server received.
type Command struct {
	Session int    // 1 for the first connection, 2 for the next...
	User    string // the user logged in when it arrived, "" before login
	Tag     string
	Name    string // upper case, with "UID " when given: "UID EXPUNGE"
	Args    string // the rest of the line, literals inline
	Time    time.Time
}

// String is the command as the client sent it, tag excluded.
func (c Command) String() string {
	if c.Args == "" {
		return c.Name
	}
	return c.Name + " " + c.Args
}

// Server is a running fake IMAP server. Its methods are safe for
// concurrent use.
type Server struct {
	ln   net.Listener
	caps []string

	mu          sync.Mutex
	uidValidity uint32
	accounts    map[string]*account
	rules       []*rule
	log         []Command
	sessions    map[*session]struct{}
	nextSession int
	closed      bool

	wg sync.WaitGroup
}

// New starts a server on a free port of 127.0.0.1.
func New(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("imapscript: %w", err)
	}
	caps := opts.Caps
	if caps == nil {
		caps = DefaultCaps
	}
	if opts.UIDValidity == 0 {
		opts.UIDValidity = 1000
	}
	s := &Server{
		ln:          ln,
		caps:        slices.Clone(caps),
		uidValidity: opts.UIDValidity,
		accounts:    make(map[string]*account),
		sessions:    make(map[*session]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the popbridge upstream URL of the server.
func (s *Server) URL() string { return "imap+insecure://" + s.Addr() }

// AddUser creates an account with an empty INBOX (or changes its password).
func (s *Server) AddUser(name, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.accounts[name]; ok {
		a.password = password
		return
	}
	s.accounts[name] = &account{password: password, boxes: map[string]*mailbox{
		"INBOX": newMailbox(s.uidValidity),
	}}
}

// Append stores body (CRLF line ends expected) in user's mailbox, creating
// the mailbox if needed, and returns its UID. It panics for an unknown user.
func (s *Server) Append(user, mailbox string, body []byte, flags ...string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boxLocked(user, mailbox, true).append(body, flags)
}

// Messages returns a copy of user's mailbox in UID order; nil when the
// mailbox does not exist.
func (s *Server) Messages(user, mailbox string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.boxLocked(user, mailbox, false)
	if mb == nil {
		return nil
	}
	out := make([]Message, len(mb.msgs))
	for i, m := range mb.msgs {
		out[i] = m.clone()
	}
	return out
}

// UIDValidity returns the UIDVALIDITY of user's mailbox.
func (s *Server) UIDValidity(user, mailbox string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mb := s.boxLocked(user, mailbox, false); mb != nil {
		return mb.uidValidity
	}
	return 0
}

// SetUIDValidity changes the UIDVALIDITY of user's mailbox, as a mailbox
// rebuilt by the server would.
func (s *Server) SetUIDValidity(user, mailbox string, v uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.boxLocked(user, mailbox, true).uidValidity = v
}

// AddFlags adds flags to message uid of user's mailbox, as another client
// would; it reports whether the message exists.
func (s *Server) AddFlags(user, mailbox string, uid uint32, flags ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mb := s.boxLocked(user, mailbox, false); mb != nil {
		for _, m := range mb.msgs {
			if m.UID == uid {
				setFlags(m, "+FLAGS", flags)
				return true
			}
		}
	}
	return false
}

// Expunge removes the messages uids from user's mailbox, as another client
// would, and returns how many there were.
func (s *Server) Expunge(user, mailbox string, uids ...uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.boxLocked(user, mailbox, false)
	if mb == nil {
		return 0
	}
	n := len(mb.msgs)
	mb.msgs = slices.DeleteFunc(mb.msgs, func(m *Message) bool { return slices.Contains(uids, m.UID) })
	return n - len(mb.msgs)
}

func (s *Server) boxLocked(user, mailbox string, create bool) *mailbox {
	a, ok := s.accounts[user]
	if !ok {
		if !create {
			return nil
		}
		panic(fmt.Sprintf("imapscript: no user %q", user))
	}
	name := canonicalMailbox(mailbox)
	mb := a.boxes[name]
	if mb == nil && create {
		mb = newMailbox(s.uidValidity)
		a.boxes[name] = mb
	}
	return mb
}

// AddRule scripts a misbehaviour; rules are tried in the order added and
// the first that matches applies.
func (s *Server) AddRule(r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := r.Times
	if left <= 0 {
		left = -1
	}
	s.rules = append(s.rules, &rule{Rule: r, left: left})
}

// ClearRules removes every rule; sessions already hanging stay hung.
func (s *Server) ClearRules() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
}

// match returns the step for a command at p from user, consuming one use
// of the rule that gave it.
func (s *Server) match(p Point, user string) (Step, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if r.At != p || r.left == 0 || (r.User != "" && !strings.EqualFold(r.User, user)) {
			continue
		}
		if r.left > 0 {
			r.left--
		}
		return r.Step, r.Text
	}
	return Normal, ""
}

// Commands returns every command received so far, in order of arrival.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// CommandsNamed returns the commands whose Name is one of names.
func (s *Server) CommandsNamed(names ...string) []Command {
	var out []Command
	for _, c := range s.Commands() {
		if slices.Contains(names, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// WaitCommand waits until a command named name has arrived, for at most
// timeout.
func (s *Server) WaitCommand(name string, timeout time.Duration) (Command, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if cs := s.CommandsNamed(name); len(cs) > 0 {
			return cs[0], true
		}
		if time.Now().After(deadline) {
			return Command{}, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ResetCommands forgets the commands received so far.
func (s *Server) ResetCommands() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

func (s *Server) record(c Command) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, c)
}

// Active is the number of open connections.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// WaitIdle waits until no connection is open, for at most timeout.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.Active() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Close stops the server, closes every connection (hung ones included)
// and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ss := range s.sessions {
		ss.conn.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.nextSession++
		ss := newSession(s, nc, s.nextSession)
		s.sessions[ss] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			ss.serve()
			s.mu.Lock()
			delete(s.sessions, ss)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) hasCap(c string) bool {
	return slices.ContainsFunc(s.caps, func(have string) bool { return strings.EqualFold(have, c) })
}
