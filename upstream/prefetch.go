package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/pop3server"
)

// Prefetch (docs/prefetch.md): a session that reads in order (RETR n then
// n+1, TOP n 0 over the maildrop, fetchmail's TOP n 99999999, or a
// pipelined batch of these) pays one upstream round trip per message, and
// with small messages the round trip is all it pays for. So on an in-order
// read of a small message the session asks for that message and the next
// small ones in one UID FETCH of a UID set, and, while it serves them from
// memory, already sends the UID FETCH of the next window: its answer
// travels while the client downloads. Large messages are never fetched
// ahead; they stream as before.
//
// Bounds: every octet is reserved in the session's cache.Bodies before it
// is asked for, within --prefetch-session-bytes and the process-wide
// --prefetch-bytes; a session that gets no room reads one message at a
// time. A window is at most half the session's limit, and a new one is
// sent only when half the limit is free and no other is outstanding. Only
// UIDs of the session's snapshot are ever fetched.
//
// Expunges: a message another client expunged before its window was
// fetched is simply missing from the answer and is then fetched alone,
// which answers -ERR. One expunged after its window was fetched is served:
// the session holds its bytes, part of its snapshot. Bytes are kept under
// the UID the server sent with them, so they are never another message's.

// maxHeaderAhead bounds a header fetched ahead for TOP n 0:
// BODY.PEEK[HEADER]<0.maxHeaderAhead>. A header that fills it may be cut,
// so it is not kept, and TOP fetches that one alone.
const maxHeaderAhead = 16 << 10

// maxBodyShare: the largest message fetched ahead whole is the session's
// limit divided by this.
const maxBodyShare = 8

// kinds of read-ahead: whole messages (RETR) and headers (TOP n 0).
const (
	aheadWhole = iota
	aheadHeader
	aheadKinds
)

// prefetch is a session's read-ahead state; the zero value is off.
type prefetch struct {
	bodies  *cache.Bodies
	maxBody int64 // largest message fetched ahead whole
	// Per kind: last is the message number read last, next the first
	// one not yet asked for, and asked the message numbers asked for
	// and not yet read, ascending.
	last, next [aheadKinds]int
	asked      [aheadKinds][]int
	batches    []*batch // sent, answer not yet read; oldest first
}

func newPrefetch(budget *cache.Budget, sessionBytes int64) prefetch {
	bodies := cache.NewBodies(budget, sessionBytes)
	return prefetch{bodies: bodies, maxBody: bodies.Limit() / maxBodyShare}
}

// batch is one UID FETCH of a window.
type batch struct {
	kind int
	cmd  *imapclient.FetchCommand
	keys []cache.BodyKey
}

func bodyKey(uid imap.UID, kind int) cache.BodyKey {
	return cache.BodyKey{UID: uint32(uid), Header: kind == aheadHeader}
}

// prefetched serves message n from the session's read-ahead, fetching it
// and the next window in one command when this is an in-order read that
// nothing was fetched ahead for. It returns a nil Body (and nil error)
// when the caller should stream the message itself.
func (m *maildrop) prefetched(ctx context.Context, n int, msg message, header bool) (pop3server.Body, error) {
	p := &m.pf
	if p.bodies == nil {
		return nil, nil
	}
	kind := aheadWhole
	if header {
		kind = aheadHeader
	}
	inOrder := n == p.last[kind]+1
	p.last[kind] = n
	if inOrder {
		m.forgetBefore(kind, n)
	}
	k := bodyKey(msg.uid, kind)
	if p.pendingIn(k) {
		if err := m.settleBatches(ctx, true); err != nil {
			return nil, pop3server.ErrTemporary.Wrap(err)
		}
	}
	data, ok := p.bodies.Take(k)
	if !ok && inOrder && n >= p.next[kind] && (header || msg.size <= p.maxBody) {
		// This message and the next ones, in one command.
		if err := m.settleBatches(ctx, true); err != nil {
			return nil, pop3server.ErrTemporary.Wrap(err)
		}
		if m.sendBatch(ctx, kind, n, min(p.bodies.Room(), p.bodies.Limit()/2)) {
			if err := m.settleBatches(ctx, true); err != nil {
				return nil, pop3server.ErrTemporary.Wrap(err)
			}
			data, ok = p.bodies.Take(k)
		}
	}
	if !ok {
		// Streamed: the next in-order read fetches its window itself.
		// Sending one now would only make this message wait for it.
		return nil, nil
	}
	p.taken(kind, n)
	if inOrder && len(p.batches) == 0 && p.bodies.Room() >= p.bodies.Limit()/2 {
		// The next window travels while this message is served.
		m.sendBatch(ctx, kind, n+1, p.bodies.Limit()/2)
	}
	return &memBody{data: data, bodies: p.bodies}, nil
}

// pendingIn reports whether k was asked for in a batch not yet read.
func (p *prefetch) pendingIn(k cache.BodyKey) bool {
	return len(p.batches) > 0 && p.bodies.Reserved(k) > 0 && !p.bodies.Filled(k)
}

// forgetBefore drops what was fetched ahead for messages before n: an
// in-order reader skipped them (or DELE'd them) and will not come back.
func (m *maildrop) forgetBefore(kind, n int) {
	p := &m.pf
	asked := p.asked[kind]
	i := 0
	for ; i < len(asked) && asked[i] < n; i++ {
		p.bodies.Drop(bodyKey(m.msgUIDs[asked[i]-1], kind))
	}
	p.asked[kind] = asked[i:]
}

// taken removes n from the asked list once its body is lent out.
func (p *prefetch) taken(kind, n int) {
	asked := p.asked[kind]
	if len(asked) > 0 && asked[0] == n {
		p.asked[kind] = asked[1:]
	}
}

// sendBatch reserves a window of consecutive messages from number from
// on, at most limit octets, stopping before a message too large to fetch
// ahead, and sends its UID FETCH without waiting for the answer. It
// reports whether a command was sent.
func (m *maildrop) sendBatch(ctx context.Context, kind, from int, limit int64) bool {
	p := &m.pf
	first := max(from, p.next[kind])
	last := first - 1
	sent := m.sendWindow(ctx, kind, func(yield func(int) bool) {
		for i := first; i <= len(m.msgUIDs); i++ {
			if kind == aheadWhole && m.infos[i-1].Size > p.maxBody || !yield(i) {
				return
			}
			last = i
		}
	}, limit)
	if sent {
		p.next[kind] = last + 1
	}
	return sent
}

// Upcoming implements pop3server.Prefetcher: the messages that pipelined
// RETR (retr) and TOP n 0 (headers) commands waiting behind the current
// one will read are fetched in one window each, in whatever order they
// come. Nothing is sent while a body streams (the connection is inside its
// literal) or while another window is on its way.
func (m *maildrop) Upcoming(ctx context.Context, retr, headers []int) {
	for kind, ns := range [aheadKinds][]int{aheadWhole: retr, aheadHeader: headers} {
		if m.pf.bodies == nil || m.body != nil || m.dead != nil || len(m.pf.batches) > 0 || len(ns) == 0 {
			return
		}
		m.sendWindow(ctx, kind, func(yield func(int) bool) {
			for _, n := range ns {
				if n >= 1 && n <= len(m.msgUIDs) && (kind == aheadHeader || m.infos[n-1].Size <= m.pf.maxBody) && !yield(n) {
					return
				}
			}
		}, m.pf.bodies.Limit()/2)
	}
}

// sendWindow reserves the messages of ns, skipping those already held or
// asked for, until limit octets or the session's room is used up, and
// sends their UID FETCH without waiting for the answer. It reports whether
// a command was sent.
func (m *maildrop) sendWindow(ctx context.Context, kind int, ns iter.Seq[int], limit int64) bool {
	p := &m.pf
	bt := &batch{kind: kind}
	var set imap.UIDSet
	var total int64
	for i := range ns {
		size := m.infos[i-1].Size
		r := size
		if kind == aheadHeader {
			r = min(size, maxHeaderAhead)
		}
		r = max(r, 1)
		k := bodyKey(m.msgUIDs[i-1], kind)
		if p.bodies.Reserved(k) > 0 {
			continue // held, or on its way
		}
		if total+r > limit || !p.bodies.Reserve(k, r) {
			break
		}
		total += r
		set.AddNum(m.msgUIDs[i-1])
		bt.keys = append(bt.keys, k)
		p.asked[kind] = append(p.asked[kind], i)
	}
	if len(bt.keys) == 0 {
		return false
	}
	item := &imap.FetchItemBodySection{Peek: true}
	if kind == aheadHeader {
		item.Specifier = imap.PartSpecifierHeader
		item.Partial = &imap.SectionPartial{Offset: 0, Size: maxHeaderAhead}
	}
	// Not observed: the window's "fetch" is observed once, when its
	// answer is read (settleBatches).
	err := m.exchange(ctx, "", func() error {
		bt.cmd = m.imap().Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{item}})
		return nil
	})
	if err != nil || bt.cmd == nil {
		p.dropKeys(bt)
		if bt.cmd != nil {
			m.abandon(bt)
		}
		return false
	}
	p.batches = append(p.batches, bt)
	return true
}

func (p *prefetch) dropKeys(bt *batch) {
	for _, k := range bt.keys {
		if !p.bodies.Filled(k) {
			p.bodies.Drop(k)
		}
	}
}

// settleBatches reads the answers of every batch sent, oldest first: into
// the session's bodies when keep, else discarded (the session is ending).
// On a dead connection they are abandoned.
func (m *maildrop) settleBatches(ctx context.Context, keep bool) error {
	p := &m.pf
	for len(p.batches) > 0 {
		bt := p.batches[0]
		p.batches = p.batches[1:]
		if err := m.usable(); err != nil {
			m.abandon(bt)
			continue
		}
		var broken bool
		err := m.exchange(ctx, "fetch", func() error {
			var err error
			broken, err = m.readBatch(bt, keep)
			return err
		})
		p.dropKeys(bt)
		if err != nil && !broken {
			m.abandon(bt)
		}
	}
	return m.usable()
}

// abandon lets go of a batch on a retired connection: FetchCommand.Close
// reads (and fails) its literals, which unparks go-imap's reader.
func (m *maildrop) abandon(bt *batch) {
	m.pf.dropKeys(bt)
	m.retire(errors.New("prefetch abandoned"))
	_ = bt.cmd.Close()
}

// readBatch reads a batch's answer. A body is kept only under the UID the
// server sent before it, only if this batch asked for it and it fits what
// was reserved; anything else is discarded. broken reports a literal that
// failed mid-way: the command must then not be touched again (see
// section.Read).
func (m *maildrop) readBatch(bt *batch, keep bool) (broken bool, err error) {
	p := &m.pf
	m.l.bodies.Store(true)
	defer m.l.bodies.Store(false)
	for fm := bt.cmd.Next(); fm != nil; fm = bt.cmd.Next() {
		var uid imap.UID
		for it := fm.Next(); it != nil; it = fm.Next() {
			switch it := it.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				if !keep || uid == 0 || it.Literal == nil || !batchSection(bt.kind, it.Section) {
					continue // go-imap discards it
				}
				k := bodyKey(uid, bt.kind)
				size := it.Literal.Size()
				reserved := p.bodies.Reserved(k) // 0: not asked for in this window
				if reserved == 0 || p.bodies.Filled(k) || size > reserved ||
					(bt.kind == aheadHeader && size >= maxHeaderAhead) {
					continue
				}
				buf := make([]byte, size)
				if _, err := io.ReadFull(it.Literal, buf); err != nil {
					return true, fmt.Errorf("reading UID %d ahead: %w", uid, err)
				}
				p.bodies.Fill(k, buf)
			}
		}
	}
	if err := bt.cmd.Close(); err != nil && !isNo(err) {
		// A NO: some of the messages were expunged; they are fetched
		// alone when read, and answer -ERR then.
		return false, fmt.Errorf("UID FETCH ahead: %w", err)
	}
	return false, nil
}

// batchSection reports whether a section in an answer is the one a batch
// of this kind asked for.
func batchSection(kind int, s *imap.FetchItemBodySection) bool {
	if kind == aheadHeader {
		return s.Specifier == imap.PartSpecifierHeader && s.Partial != nil && s.Partial.Offset == 0
	}
	return s.Specifier == imap.PartSpecifierNone && s.Partial == nil && len(s.Part) == 0
}

// memBody is a body served from the session's read-ahead.
type memBody struct {
	data   []byte
	off    int
	bodies *cache.Bodies
}

func (b *memBody) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

// WriteTo writes the rest of the body to w in one call: pop3server then
// needs no copy buffer for it.
func (b *memBody) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b.data[b.off:])
	b.off += n
	return int64(n), err
}

// Close gives the body's octets back to the budgets.
func (b *memBody) Close() error {
	if b.data != nil {
		b.bodies.Free(int64(len(b.data)))
		b.data, b.off = nil, 0
	}
	return nil
}
