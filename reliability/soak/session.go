package soak

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbridge/popbridge/internal/testing/pop3client"
)

// Kind is one kind of POP3 session a soak client runs.
type Kind int

// The session kinds. Every kind logs in and lists (UIDL, LIST) first,
// except DropBeforeLogin.
const (
	Poll            Kind = iota // STAT, QUIT: a device checking for mail
	Retr                        // RETR one to three messages, QUIT
	Top                         // TOP of one to three messages, QUIT
	Dele                        // RETR and DELE one or two messages, QUIT
	Rset                        // DELE, RSET, QUIT: nothing may be removed
	DropMidRetr                 // DELE, then hang up in the middle of a RETR
	DropAfterDele               // DELE, then hang up without QUIT
	DropBeforeLogin             // connect and hang up at once
	numKinds
)

var kindNames = [numKinds]string{"poll", "retr", "top", "dele", "rset", "drop-mid-retr", "drop-after-dele", "drop-before-login"}

func (k Kind) String() string { return kindNames[k] }

// Mix weighs the session kinds; DefaultMix is used when all are zero.
type Mix [numKinds]int

// DefaultMix is mostly polling and downloading, as real clients do, with
// a steady share of deletions and dropped connections.
var DefaultMix = Mix{Poll: 25, Retr: 20, Top: 15, Dele: 15, Rset: 5, DropMidRetr: 8, DropAfterDele: 7, DropBeforeLogin: 5}

func (m Mix) pick(r *rand.Rand) Kind {
	total := 0
	for _, w := range m {
		total += w
	}
	n := r.IntN(total)
	for k, w := range m {
		if n < w {
			return Kind(k)
		}
		n -= w
	}
	return Poll
}

// stats are the counters every client adds to.
type stats struct {
	sessions   [numKinds]atomic.Int64
	retrieved  atomic.Int64 // RETRs verified octet for octet
	tops       atomic.Int64 // TOPs verified
	verified   atomic.Int64 // octets verified
	read       atomic.Int64 // octets read from popbridge
	quitOK     atomic.Int64
	quitErr    atomic.Int64 // -ERR at QUIT (allowed only with TolerateTemp)
	temp       atomic.Int64 // tolerated temporary failures
	vanished   atomic.Int64 // "no such message" for a message removed meanwhile
	cutShort   atomic.Int64 // transfers that ended without the dot
	unexpected atomic.Int64

	mu        sync.Mutex
	samples   []string // the first unexpected errors
	durations []time.Duration
}

func (s *stats) fail(format string, args ...any) {
	s.unexpected.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) < 20 {
		s.samples = append(s.samples, fmt.Sprintf(format, args...))
	}
}

// client runs sessions back to back until told to stop.
type client struct {
	cfg   *Config
	l     *ledger
	st    *stats
	rng   *rand.Rand
	start func() bool // false once no more sessions may start
}

func (c *client) run() {
	for c.start() {
		u := c.cfg.Users[c.rng.IntN(len(c.cfg.Users))]
		k := c.cfg.Mix.pick(c.rng)
		c.st.sessions[k].Add(1)
		t0 := time.Now()
		outcome := "ok"
		if err := c.session(u, k); err != nil {
			if errors.Is(err, errCutShort) {
				c.st.cutShort.Add(1)
				outcome = "cut-short"
			} else if c.cfg.TolerateTemp && isTemp(err) {
				c.st.temp.Add(1)
				outcome = "temporary"
			} else {
				c.st.fail("%s session as %s: %v", k, u.Name, err)
				outcome = "unexpected"
			}
		}
		d := time.Since(t0)
		if c.cfg.OnSession != nil {
			c.cfg.OnSession(SessionResult{Start: t0, Duration: d, Kind: k, Outcome: outcome})
		}
		c.st.mu.Lock()
		c.st.durations = append(c.st.durations, d)
		c.st.mu.Unlock()
		if c.cfg.ThinkTime > 0 {
			time.Sleep(time.Duration(c.rng.Int64N(int64(c.cfg.ThinkTime))))
		}
	}
}

// errCutShort is a RETR or TOP whose connection closed before the dot.
// Without injected faults that is right only when the message was expunged
// in the middle of the transfer (TOP fetches in several steps): the audit
// decides, from whether the message is gone at the end.
var errCutShort = errors.New("connection closed in the middle of a message")

// tempError is a failure popbridge is allowed under injected faults: a
// -ERR [SYS/TEMP] answer or a connection it closed.
type tempError struct{ err error }

func (e tempError) Error() string { return e.err.Error() }
func (e tempError) Unwrap() error { return e.err }

func isTemp(err error) bool {
	var t tempError
	return errors.As(err, &t)
}

// answer classifies a failed exchange: a [SYS/TEMP] answer or a closed
// connection is temporary; anything else (a timeout included) is not.
func answer(what, status string, err error) error {
	switch {
	case err == nil && strings.HasPrefix(status, "-ERR [SYS/TEMP]"):
		return tempError{fmt.Errorf("%s: %q", what, status)}
	case err == nil:
		return fmt.Errorf("%s: %q", what, status)
	case errors.Is(err, errNoDot) || (!isTimeout(err) && !strings.Contains(err.Error(), "no answer")):
		return tempError{fmt.Errorf("%s: %w", what, err)}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (c *client) session(u User, k Kind) error {
	pc, err := dialPOP3(c.cfg.POP3Addr, c.cfg.OpTimeout)
	if err != nil {
		return answer("connect", "", err)
	}
	defer func() {
		c.st.read.Add(pc.BytesRead())
		pc.Close()
	}()
	if k == DropBeforeLogin {
		return nil
	}
	if st, err := pc.TryCmd("USER " + u.Name); err != nil || !strings.HasPrefix(st, "+OK") {
		return answer("USER", st, err)
	}
	if st, err := pc.TryCmd("PASS " + u.Password); err != nil || !strings.HasPrefix(st, "+OK") {
		return answer("PASS", st, err)
	}
	msgs, err := listing(pc)
	if err != nil {
		return answer("listing", "", err)
	}
	c.l.mu.Lock()
	validity := c.l.uidValidity[u.Name]
	c.l.mu.Unlock()
	for _, m := range msgs {
		if m.validity != validity {
			return fmt.Errorf("UIDL carries UIDVALIDITY %d, the mailbox has %d", m.validity, validity)
		}
	}
	picks := c.pick(len(msgs), 1+c.rng.IntN(3))
	if k == Dele || k == Rset || k == DropAfterDele || k == DropMidRetr {
		picks = picks[:min(len(picks), 2)]
	}

	switch k {
	case Poll:
		if st, err := pc.TryCmd("STAT"); err != nil || !strings.HasPrefix(st, "+OK "+strconv.Itoa(len(msgs))+" ") {
			return answer("STAT", st, err)
		}
	case Retr, Dele:
		for _, n := range picks {
			if err := c.retr(pc, u, n, msgs[n-1]); err != nil {
				return err
			}
		}
	case Top:
		for _, n := range picks {
			lines := c.rng.IntN(20)
			if c.rng.IntN(10) == 0 {
				lines = 99999999 // fetchmail's "TOP n 99999999"
			}
			if err := c.top(pc, u, n, msgs[n-1], lines); err != nil {
				return err
			}
		}
	}

	switch k {
	case Dele, Rset, DropAfterDele, DropMidRetr:
		for _, n := range picks {
			if st, err := pc.TryCmd("DELE " + strconv.Itoa(n)); err != nil || !strings.HasPrefix(st, "+OK") {
				return answer("DELE", st, err)
			}
		}
	}
	switch k {
	case DropAfterDele:
		return nil
	case DropMidRetr:
		if len(msgs) > len(picks) {
			// A message not marked: RETR of a marked one is refused.
			n := c.unmarked(len(msgs), picks)
			pc.TrySend("RETR " + strconv.Itoa(n))
			pc.Line()
		}
		return nil
	case Rset:
		if st, err := pc.TryCmd("RSET"); err != nil || !strings.HasPrefix(st, "+OK") {
			return answer("RSET", st, err)
		}
		picks = nil
	}

	keys := make([]msgKey, 0, len(picks))
	if k == Dele {
		for _, n := range picks {
			keys = append(keys, msgKey{u.Name, msgs[n-1].uid})
		}
	}
	st, err := pc.TryCmd("QUIT")
	switch {
	case err == nil && strings.HasPrefix(st, "+OK"):
		c.st.quitOK.Add(1)
		c.l.mark(c.l.deleted, keys...)
		return nil
	default:
		// -ERR, or no answer: the update may have been applied in
		// part; the audit accepts either.
		c.st.quitErr.Add(1)
		c.l.mark(c.l.maybe, keys...)
		return answer("QUIT", st, err)
	}
}

// pick chooses up to want distinct message numbers of 1..n.
func (c *client) pick(n, want int) []int {
	if n == 0 {
		return nil
	}
	nums := c.rng.Perm(n)[:min(want, n)]
	for i := range nums {
		nums[i]++
	}
	slices.Sort(nums)
	return nums
}

func (c *client) unmarked(n int, marked []int) int {
	for {
		m := 1 + c.rng.IntN(n)
		if !slices.Contains(marked, m) {
			return m
		}
	}
}

// checkBodyAnswer accounts for a RETR or TOP answer that carries no body
// to check: a message expunged meanwhile (counted, not an error), a
// transfer cut short, or another failure. done is false for a +OK body.
func (c *client) checkBodyAnswer(verb string, n int, k msgKey, st string, err error) (done bool, _ error) {
	switch {
	case err == nil && st == "-ERR no such message":
		c.l.mark(c.l.vanished, k)
		c.st.vanished.Add(1)
		return true, nil
	case !c.cfg.TolerateTemp && (errors.Is(err, errNoDot) || errors.Is(err, io.EOF)):
		c.l.mark(c.l.cutShort, k)
		return true, fmt.Errorf("%s %d (%s): %w", verb, n, k, errCutShort)
	case err != nil || !strings.HasPrefix(st, "+OK"):
		return true, answer(verb, st, err)
	}
	return false, nil
}

// retr downloads message n and checks it octet for octet.
func (c *client) retr(pc *pop3client.Client, u User, n int, e entry) error {
	st, body, err := pc.TryMulti("RETR " + strconv.Itoa(n))
	k := msgKey{u.Name, e.uid}
	if done, err := c.checkBodyAnswer("RETR", n, k, st, err); done {
		return err
	}
	user, serial, ok := parseID(body)
	if !ok || user != u.Name {
		return fmt.Errorf("RETR %d (%s): not one of %s's soak messages: %.80q", n, k, u.Name, body)
	}
	c.l.claim(k, serial)
	want := messageBody(user, serial)
	if !bytes.Equal(body, want) {
		return fmt.Errorf("RETR %d (%s): %d octets differ from message %d's %d", n, k, len(body), serial, len(want))
	}
	if int64(len(body)) != e.size {
		return fmt.Errorf("RETR %d (%s): %d octets, LIST said %d", n, k, len(body), e.size)
	}
	c.st.retrieved.Add(1)
	c.st.verified.Add(int64(len(body)))
	return nil
}

// top runs TOP n lines and checks the result against the message.
func (c *client) top(pc *pop3client.Client, u User, n int, e entry, lines int) error {
	st, got, err := pc.TryMulti("TOP " + strconv.Itoa(n) + " " + strconv.Itoa(lines))
	k := msgKey{u.Name, e.uid}
	if done, err := c.checkBodyAnswer("TOP", n, k, st, err); done {
		return err
	}
	user, serial, ok := parseID(got)
	if !ok || user != u.Name {
		return fmt.Errorf("TOP %d (%s): not one of %s's soak messages: %.80q", n, k, u.Name, got)
	}
	c.l.claim(k, serial)
	if want := topOf(messageBody(user, serial), lines); !bytes.Equal(got, want) {
		return fmt.Errorf("TOP %d %d (%s): %d octets, want %d", n, lines, k, len(got), len(want))
	}
	c.st.tops.Add(1)
	c.st.verified.Add(int64(len(got)))
	return nil
}
