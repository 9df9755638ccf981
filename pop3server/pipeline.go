package pop3server

import (
	"bytes"
	"context"
	"strings"
)

// Prefetcher is optionally implemented by a Mailbox that can fetch bodies
// ahead (the upstream backend's read-ahead, docs/prefetch.md). Once a
// RETR or TOP has been answered in full, the server passes the messages
// that the client's pipelined RETR and TOP n 0 commands, already waiting
// in the input buffer, will ask for, in their order. They are hints: each command still calls Retrieve or Top, and a
// Mailbox may ignore them.
type Prefetcher interface {
	Upcoming(ctx context.Context, retr, headers []int)
}

// maxUpcoming bounds the messages one hint names; the input buffer holds
// about a hundred short commands anyway (MaxLineLength).
const maxUpcoming = 256

// hintPipelined tells a Prefetcher what the commands buffered behind the
// current one will read. Only whole lines are looked at, nothing is
// consumed, and numbers that would be refused (out of range, deleted) are
// left out.
func (c *conn) hintPipelined() {
	p, ok := c.mbox.(Prefetcher)
	if !ok || c.r.Buffered() == 0 {
		return
	}
	b, _ := c.r.Peek(c.r.Buffered())
	var retr, headers []int
	for len(retr)+len(headers) < maxUpcoming {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(string(b[:i]), "\r"), " ")
		b = b[i+1:]
		switch args := strings.Fields(arg); {
		case strings.EqualFold(verb, "RETR") && len(args) == 1:
			if n, ok := c.upcoming(args[0]); ok {
				retr = append(retr, n)
			}
		case strings.EqualFold(verb, "TOP") && len(args) == 2 && args[1] == "0":
			if n, ok := c.upcoming(args[0]); ok {
				headers = append(headers, n)
			}
		}
	}
	if len(retr)+len(headers) > 0 {
		p.Upcoming(c.ctx, retr, headers)
	}
}

// upcoming resolves a pipelined message number as message would, without
// answering anything.
func (c *conn) upcoming(s string) (int, bool) {
	n, ok := parseNumber(s)
	if !ok || n < 1 || n > len(c.msgs) || c.deleted[n-1] {
		return 0, false
	}
	return n, true
}
