package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

type state int

const (
	stateAuthorization state = 1 << iota
	stateTransaction
	stateUpdate
)

// result is how a command went, for metrics and the bad-command budget.
type result int

const (
	resOK  result = iota // answered +OK
	resErr               // answered -ERR, a legitimate refusal
	resBad               // answered -ERR, unknown, malformed or out of state
)

// errClose asks the loop to end the connection after a handler has written
// its last words.
var errClose = errors.New("close connection")

var errLineTooLong = errors.New("line too long")

// copyBufs holds the buffers a streamed RETR or TOP copies through, so a
// busy server does not allocate one per message. 128 KiB: each read from
// the upstream then takes up to that much in one system call, and the
// upstream writes in bigger pieces too; against 32 KiB, a download of
// 1 MiB and 25 MiB messages went 13 % faster with 15 % less CPU per MB,
// popbridge's and the upstream Dovecot's together (docs/benchmarks.md).
// Only transfers in progress hold one; bodies already in memory (read
// ahead) are written without it (io.WriterTo).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// writers holds the buffered writers of connections that are not writing:
// a session waiting for its next command (most of them, most of the time,
// with thousands of idle devices) holds none. Since only busy sessions
// hold one, it can be large: a 50,000-line UIDL or a big RETR then takes a
// write per 32 KiB rather than per 4 KiB.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// writersHeld counts the writers connections hold, for tests.
var writersHeld atomic.Int64

type conn struct {
	srv  *Server
	raw  net.Conn // the accepted connection; deadlines and Close go here
	nc   net.Conn // raw, or the TLS connection on top of it
	r    *bufio.Reader
	w    *bufio.Writer // from writers while there is a reply to write, else nil
	out  countingWriter
	info ConnInfo

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	state         state
	start         time.Time
	plaintextOK   bool
	user          string // from USER, until PASS
	badCommands   int
	loginFailures int

	mbox      Mailbox
	msgs      []MessageInfo
	deleted   []bool
	retrieved []bool
	unlock    func()

	adm     admission   // guarded by srv.mu
	evicted atomic.Bool // closed to admit a newer connection

	stats SessionStats
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, raw: nc, nc: nc, state: stateAuthorization, start: time.Now()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.out.w = writerFunc(c.writeNet)
	c.r = bufio.NewReaderSize(nc, s.opts.MaxLineLength+2)
	return c
}

// acquireWriter makes c.w usable, taking a writer from the pool.
func (c *conn) acquireWriter() {
	if c.w == nil {
		c.w = writers.Get().(*bufio.Writer)
		c.w.Reset(&c.out)
		writersHeld.Add(1)
	}
}

// releaseWriter gives c.w back to the pool once nothing is left in it.
func (c *conn) releaseWriter() {
	if c.w != nil && c.w.Buffered() == 0 {
		c.w.Reset(nil)
		writers.Put(c.w)
		c.w = nil
		writersHeld.Add(-1)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// writeNet writes to the client with a fresh write deadline, so only a
// write that makes no progress for WriteTimeout fails.
func (c *conn) writeNet(p []byte) (int, error) {
	if t := c.srv.opts.WriteTimeout; t > 0 {
		c.raw.SetWriteDeadline(time.Now().Add(t))
	}
	return c.nc.Write(p)
}

// interrupt wakes a session blocked reading its next command (Shutdown).
func (c *conn) interrupt() { c.raw.SetReadDeadline(time.Unix(1, 0)) }

func (c *conn) serve() {
	defer c.finish()
	defer func() {
		if v := recover(); v != nil {
			c.stats.Result = "error"
			c.srv.opts.Logger.Error().Str("session", c.info.SessionID).
				Interface("panic", v).Bytes("stack", debug.Stack()).Msg("session panicked")
			c.raw.SetWriteDeadline(time.Now().Add(time.Second))
			c.acquireWriter()
			c.w.WriteString("-ERR [SYS/TEMP] internal error\r\n")
			c.w.Flush()
		}
	}()

	c.info = ConnInfo{
		SessionID:  newSessionID(),
		RemoteAddr: addrPort(c.raw.RemoteAddr()),
		LocalAddr:  addrPort(c.raw.LocalAddr()),
	}
	c.stats.Start = c.start
	defer c.srv.release(c)
	if reason, ok := c.srv.admit(c); !ok {
		c.stats.Result = "limit"
		c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.acquireWriter()
		fmt.Fprintf(c.w, "-ERR [SYS/TEMP] %s\r\n", reason)
		c.w.Flush()
		return
	}

	if tc, ok := c.raw.(*tls.Conn); ok {
		c.raw.SetDeadline(c.preLoginDeadline(c.srv.opts.PreLoginIdleTimeout))
		if err := tc.HandshakeContext(c.ctx); err != nil {
			c.stats.Result = "tls-error"
			return
		}
		c.raw.SetDeadline(time.Time{})
		c.info.TLS = true
	}
	c.plaintextOK = c.info.TLS || c.srv.plaintextAllowed(c.info.RemoteAddr.Addr())
	c.srv.opts.Observer.ConnectionOpened(c.info)

	c.acquireWriter()
	c.w.WriteString("+OK popbridge ready.\r\n")
	if err := c.w.Flush(); err != nil {
		c.stats.Result = "disconnected"
		return
	}
	c.releaseWriter()
	for {
		line, err := c.readLine()
		if err != nil {
			c.endOnReadError(err)
			return
		}
		c.acquireWriter()
		if err := c.handle(line); err != nil {
			if c.stats.Result == "" {
				c.stats.Result = "disconnected"
			}
			return
		}
		if !c.pipelinedLineWaiting() {
			if err := c.w.Flush(); err != nil {
				c.stats.Result = "disconnected"
				return
			}
			c.releaseWriter()
		}
	}
}

// pipelinedLineWaiting reports whether a whole command is already buffered,
// in which case its reply can share a flush with this one (PIPELINING).
func (c *conn) pipelinedLineWaiting() bool {
	n := c.r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := c.r.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

func (c *conn) finish() {
	c.cancel()
	if c.w != nil {
		// Whatever is left unflushed is for a client that is gone.
		c.w.Reset(nil)
		writers.Put(c.w)
		c.w = nil
		writersHeld.Add(-1)
	}
	if c.mbox != nil {
		if err := c.mbox.Close(); err != nil {
			c.srv.opts.Logger.Debug().Err(err).Str("session", c.info.SessionID).Msg("closing maildrop")
		}
	}
	c.releaseLock()
	c.closeGracefully()
	for _, d := range c.deleted {
		if d {
			c.stats.Deleted++
		}
	}
	c.stats.Duration = time.Since(c.start)
	c.stats.BytesSent = c.out.n
	if c.stats.Result == "" {
		c.stats.Result = "disconnected"
	}
	// The session is reported before it stops counting: Shutdown and
	// Close return once no session counts, and whoever waited for them
	// (a process about to exit, a test reading the log) must see it.
	c.srv.opts.Observer.SessionClosed(c.info, c.stats)
	c.srv.trackConn(c, false)
}

// closeGracefully sends FIN and drains a little unread input before
// closing: closing a socket with unread data makes the kernel send RST,
// which can destroy our last response before the client reads it.
func (c *conn) closeGracefully() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.raw.(closeWriter); ok && cw.CloseWrite() == nil {
		c.raw.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c.raw, 64*1024)
	}
	c.raw.Close()
}

// endOnReadError says goodbye after a failed read, when there is someone
// to say it to.
func (c *conn) endOnReadError(err error) {
	var ne net.Error
	switch {
	case c.evicted.Load() && errors.As(err, &ne) && ne.Timeout():
		c.stats.Result = "evicted"
		c.lastWords(evictedWords)
	case c.srv.draining.Load() && errors.As(err, &ne) && ne.Timeout():
		c.stats.Result = "shutdown"
		c.lastWords("-ERR [SYS/TEMP] server shutting down, try again later")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.stats.Result = "timeout"
		c.lastWords("-ERR Disconnected for inactivity.")
	case errors.Is(err, errLineTooLong):
		c.stats.Result = "limit"
		c.lastWords("-ERR line too long")
	default:
		c.stats.Result = "disconnected"
	}
}

func (c *conn) lastWords(line string) {
	c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.acquireWriter()
	c.w.WriteString(line + "\r\n")
	c.w.Flush()
}

// readLine reads one command line (or SASL response) under the current
// phase's deadline and the line length limit.
func (c *conn) readLine() (string, error) {
	if err := c.releaseWhileIdle(); err != nil {
		return "", err
	}
	c.setReadDeadline()
	// Checked after setting the deadline, so a Shutdown that ran before
	// this point is seen here and one that runs after it interrupts the read.
	if c.srv.draining.Load() || c.evicted.Load() {
		return "", os.ErrDeadlineExceeded
	}
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
	if len(line) > c.srv.opts.MaxLineLength {
		return "", errLineTooLong
	}
	return string(line), nil
}

// releaseWhileIdle waits up to ReleaseAfter for the next command of a
// logged-in client and, if none has begun by then, lets a Releaser
// Mailbox give back what it holds (Options.ReleaseAfter); readLine then
// waits as usual. Peek, not ReadSlice: on a timeout it consumes nothing,
// where ReadSlice would drop the start of a line. Nothing happens when a
// command is already buffered (pipelining) or the idle timeout would come
// first, so that timeout behaves exactly as without release.
func (c *conn) releaseWhileIdle() error {
	o := &c.srv.opts
	r, ok := c.mbox.(Releaser)
	if !ok || c.state != stateTransaction || o.ReleaseAfter <= 0 || c.r.Buffered() > 0 ||
		(o.IdleTimeout > 0 && o.IdleTimeout <= o.ReleaseAfter) {
		return nil
	}
	c.raw.SetReadDeadline(time.Now().Add(o.ReleaseAfter))
	// As in readLine: a Shutdown or eviction that ran before the deadline
	// was set is seen here, one that runs after it interrupts the Peek.
	if c.srv.draining.Load() || c.evicted.Load() {
		return os.ErrDeadlineExceeded
	}
	_, err := c.r.Peek(1)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err // a command has begun, or the client is gone
	}
	if c.srv.draining.Load() || c.evicted.Load() {
		return err // the interrupt, not our deadline
	}
	r.Release()
	return nil
}

func (c *conn) setReadDeadline() {
	o := &c.srv.opts
	if c.state == stateAuthorization {
		c.raw.SetReadDeadline(c.preLoginDeadline(o.PreLoginIdleTimeout))
		return
	}
	if o.IdleTimeout > 0 {
		c.raw.SetReadDeadline(time.Now().Add(o.IdleTimeout))
	} else {
		c.raw.SetReadDeadline(time.Time{})
	}
}

// preLoginDeadline is the earlier of now+idle and the end of the whole
// pre-login phase.
func (c *conn) preLoginDeadline(idle time.Duration) time.Time {
	var d time.Time
	if idle > 0 {
		d = time.Now().Add(idle)
	}
	if total := c.srv.opts.PreLoginTimeout; total > 0 {
		end := c.start.Add(total)
		if d.IsZero() || end.Before(d) {
			d = end
		}
	}
	return d
}

// handle runs one command line. A non-nil error ends the connection.
func (c *conn) handle(line string) error {
	verb, arg := parseCommand(line)
	cmd, known := commands[verb]
	var res result
	var err error
	switch {
	case !known:
		verb = "UNKNOWN"
		res = c.writeBad("unknown command")
	case c.state&cmd.states == 0:
		res = c.writeBad("command not valid in this state")
	default:
		res, err = cmd.handler(c, arg)
	}
	c.srv.opts.Observer.CommandDone(verb, res == resOK)
	if err != nil {
		return err
	}
	if res == resBad {
		c.badCommands++
		limit := c.srv.opts.MaxBadCommandsPostLogin
		if c.state == stateAuthorization {
			limit = c.srv.opts.MaxBadCommandsPreLogin
		}
		if limit > 0 && c.badCommands >= limit {
			c.stats.Result = "limit"
			c.lastWords("-ERR too many bad commands, closing connection")
			return errClose
		}
	}
	return nil
}

func (c *conn) writeOK(format string, args ...any) result {
	c.w.WriteString("+OK")
	if format != "" {
		c.w.WriteByte(' ')
		fmt.Fprintf(c.w, format, args...)
	}
	c.w.WriteString("\r\n")
	return resOK
}

func (c *conn) writeErr(e *Error) result {
	c.w.WriteString("-ERR ")
	c.w.WriteString(e.responseText())
	c.w.WriteString("\r\n")
	return resErr
}

func (c *conn) writeBad(text string) result {
	c.writeErr(&Error{Text: text})
	return resBad
}

// writeBody streams a Body as a multi-line response after its +OK line.
// Any failure after the +OK ends the connection without the terminating
// dot, so the client cannot take a truncated message for a whole one.
func (c *conn) writeBody(body Body) error {
	dw := newDotWriter(c.w, c.srv.opts.Workarounds)
	if err := copyBody(dw, body); err != nil {
		body.Close()
		c.stats.Result = "error"
		c.srv.opts.Logger.Warn().Err(err).Str("session", c.info.SessionID).Msg("message transfer aborted")
		return errClose
	}
	if err := body.Close(); err != nil {
		c.stats.Result = "error"
		c.srv.opts.Logger.Warn().Err(err).Str("session", c.info.SessionID).Msg("message transfer failed at its end")
		return errClose
	}
	if err := dw.Close(); err != nil {
		return errClose
	}
	if err := c.w.Flush(); err != nil {
		return errClose
	}
	return nil
}

// copyBody copies body to w: straight from its memory when it has the
// octets already (io.WriterTo), else through a pooled buffer.
func copyBody(w io.Writer, body Body) error {
	if wt, ok := body.(io.WriterTo); ok {
		_, err := wt.WriteTo(w)
		return err
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	_, err := io.CopyBuffer(w, body, *bufp)
	return err
}

// backendError answers a failed backend call, keeping the cause in the log.
func (c *conn) backendError(op string, err error) result {
	e := clientError(err)
	if !errors.Is(e, ErrNoSuchMessage) {
		c.srv.opts.Logger.Warn().Err(err).Str("session", c.info.SessionID).Str("op", op).Msg("backend error")
	}
	return c.writeErr(e)
}

// releaseLock frees the session lock (Options.LockSession), once.
func (c *conn) releaseLock() {
	if c.unlock != nil {
		c.unlock()
		c.unlock = nil
	}
}
