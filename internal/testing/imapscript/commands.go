package imapscript

import (
	"fmt"
	"strconv"
	"strings"
)

const permanentFlags = `\Answered \Flagged \Deleted \Seen \Draft \*`

func (ss *session) selectBox(tag string, readOnly bool, toks []token) {
	if len(toks) < 1 {
		ss.printf("%s BAD SELECT mailbox", tag)
		return
	}
	name := canonicalMailbox(toks[0].text)
	ss.srv.mu.Lock()
	mb := ss.srv.accounts[ss.user].boxes[name]
	var n int
	var validity, next uint32
	if mb != nil {
		n, validity, next = len(mb.msgs), mb.uidValidity, mb.uidNext
	}
	ss.srv.mu.Unlock()
	ss.selected = ""
	if mb == nil {
		ss.printf("%s NO [NONEXISTENT] no such mailbox", tag)
		return
	}
	ss.selected, ss.readOnly = name, readOnly
	ss.printf(`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`)
	ss.printf("* OK [PERMANENTFLAGS (%s)] Flags permitted.", permanentFlags)
	ss.printf("* %d EXISTS", n)
	ss.printf("* 0 RECENT")
	ss.printf("* OK [UIDVALIDITY %d] UIDs valid", validity)
	ss.printf("* OK [UIDNEXT %d] Predicted next UID", next)
	mode := "READ-WRITE"
	if readOnly {
		mode = "READ-ONLY"
	}
	ss.printf("%s OK [%s] Select completed.", tag, mode)
}

func (ss *session) status(tag string, toks []token) {
	if len(toks) != 2 || !toks[1].isList {
		ss.printf("%s BAD STATUS mailbox (items)", tag)
		return
	}
	name := canonicalMailbox(toks[0].text)
	ss.srv.mu.Lock()
	mb := ss.srv.accounts[ss.user].boxes[name]
	var items []string
	if mb != nil {
		for _, it := range toks[1].list {
			var v int
			switch strings.ToUpper(it.text) {
			case "MESSAGES":
				v = len(mb.msgs)
			case "UIDNEXT":
				v = int(mb.uidNext)
			case "UIDVALIDITY":
				v = int(mb.uidValidity)
			case "UNSEEN":
				for _, m := range mb.msgs {
					if !m.HasFlag(`\Seen`) {
						v++
					}
				}
			case "RECENT":
			default:
				continue
			}
			items = append(items, strings.ToUpper(it.text)+" "+strconv.Itoa(v))
		}
	}
	ss.srv.mu.Unlock()
	if mb == nil {
		ss.printf("%s NO [NONEXISTENT] no such mailbox", tag)
		return
	}
	ss.printf("* STATUS %s (%s)", strconv.Quote(name), strings.Join(items, " "))
	ss.printf("%s OK done", tag)
}

func (ss *session) create(tag string, toks []token) {
	if len(toks) != 1 {
		ss.printf("%s BAD CREATE mailbox", tag)
		return
	}
	name := canonicalMailbox(toks[0].text)
	ss.srv.mu.Lock()
	a := ss.srv.accounts[ss.user]
	_, exists := a.boxes[name]
	if !exists {
		a.boxes[name] = newMailbox(ss.srv.uidValidity)
	}
	ss.srv.mu.Unlock()
	if exists {
		ss.printf("%s NO [ALREADYEXISTS] mailbox exists", tag)
		return
	}
	ss.printf("%s OK created", tag)
}

// fetchItem is one parsed FETCH data item.
type fetchItem struct {
	name    string // UID, FLAGS, RFC822.SIZE or BODY
	peek    bool
	section string // "", "HEADER" or "TEXT"
	partial bool
	offset  int64
	count   int64
}

func parseFetchItems(t token) ([]fetchItem, error) {
	toks := []token{t}
	if t.isList {
		toks = t.list
	}
	var items []fetchItem
	for _, tok := range toks {
		s := strings.ToUpper(tok.text)
		switch {
		case s == "UID" || s == "FLAGS" || s == "RFC822.SIZE":
			items = append(items, fetchItem{name: s})
		case strings.HasPrefix(s, "BODY[") || strings.HasPrefix(s, "BODY.PEEK["):
			it := fetchItem{name: "BODY", peek: strings.HasPrefix(s, "BODY.PEEK[")}
			rest := s[strings.IndexByte(s, '[')+1:]
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, errSyntax
			}
			it.section, rest = rest[:end], rest[end+1:]
			if it.section != "" && it.section != "HEADER" && it.section != "TEXT" {
				return nil, fmt.Errorf("section %q not supported", it.section)
			}
			if rest != "" {
				var err1, err2 error
				o, n, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(rest, "<"), ">"), ".")
				it.offset, err1 = strconv.ParseInt(o, 10, 64)
				it.count, err2 = strconv.ParseInt(n, 10, 64)
				if !ok || err1 != nil || err2 != nil || !strings.HasPrefix(rest, "<") {
					return nil, errSyntax
				}
				it.partial = true
			}
			items = append(items, it)
		default:
			return nil, fmt.Errorf("fetch item %q not supported", tok.text)
		}
	}
	return items, nil
}

// fetched is a message's data copied out under the lock.
type fetched struct {
	seq   int
	uid   uint32
	flags []string
	body  []byte
}

func (ss *session) fetch(tag string, byUID bool, toks []token, step Step) error {
	if len(toks) != 2 {
		ss.printf("%s BAD FETCH set items", tag)
		return nil
	}
	set, err1 := parseSet(toks[0].text)
	items, err2 := parseFetchItems(toks[1])
	if err1 != nil || err2 != nil {
		ss.printf("%s BAD %v", tag, orErr(err1, err2))
		return nil
	}
	var msgs []fetched
	ss.srv.mu.Lock()
	mb := ss.boxLocked()
	if mb != nil {
		for i, m := range mb.msgs {
			id := m.UID
			if !byUID {
				id = uint32(i + 1)
			}
			max := mb.maxUID()
			if !byUID {
				max = uint32(len(mb.msgs))
			}
			if !set.contains(id, max) {
				continue
			}
			for _, it := range items {
				if it.name == "BODY" && !it.peek && !ss.readOnly {
					setFlags(m, "+FLAGS", []string{`\Seen`})
				}
			}
			msgs = append(msgs, fetched{seq: i + 1, uid: m.UID, flags: append([]string(nil), m.Flags...), body: m.Body})
		}
	}
	ss.srv.mu.Unlock()

	bodyStep := step
	for _, m := range msgs {
		if step == FlagUpdateFirst {
			fmt.Fprintf(ss.bw, "* %d FETCH (UID %d MODSEQ (1) FLAGS (%s))\r\n", m.seq, m.uid, strings.Join(m.flags, " "))
		}
		fmt.Fprintf(ss.bw, "* %d FETCH (", m.seq)
		sep := ""
		if byUID {
			fmt.Fprintf(ss.bw, "UID %d", m.uid)
			sep = " "
		}
		for _, it := range items {
			switch it.name {
			case "UID":
				if byUID {
					continue
				}
				fmt.Fprintf(ss.bw, "%sUID %d", sep, m.uid)
			case "FLAGS":
				fmt.Fprintf(ss.bw, "%sFLAGS (%s)", sep, strings.Join(m.flags, " "))
			case "RFC822.SIZE":
				size := len(m.body)
				if step == UnderstateSize {
					size -= 10
				}
				fmt.Fprintf(ss.bw, "%sRFC822.SIZE %d", sep, size)
			case "BODY":
				data := m.body
				switch it.section {
				case "HEADER":
					data = header(data)
				case "TEXT":
					data = text(data)
				}
				name := "BODY[" + it.section + "]"
				if it.partial {
					name += "<" + strconv.FormatInt(it.offset, 10) + ">"
					data = data[min(it.offset, int64(len(data))):]
					data = data[:min(it.count, int64(len(data)))]
				}
				fmt.Fprintf(ss.bw, "%s%s {%d}\r\n", sep, name, len(data))
				switch bodyStep {
				case HangMidBody, CutMidBody:
					ss.bw.Write(data[:len(data)/2])
					if err := ss.bw.Flush(); err != nil {
						return err
					}
					if bodyStep == CutMidBody {
						return errEnd
					}
					ss.hanging = true
					return nil
				case LiteralOverrun:
					ss.bw.Write(data)
					ss.bw.WriteString(" OVERRUN overrun overrun ")
					bodyStep = Normal
				default:
					ss.bw.Write(data)
				}
			}
			sep = " "
		}
		ss.bw.WriteString(")\r\n")
	}
	ss.printf("%s OK Fetch completed.", tag)
	return nil
}

func orErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) store(tag string, byUID bool, toks []token) {
	if len(toks) != 3 {
		ss.printf("%s BAD STORE set op flags", tag)
		return
	}
	if ss.readOnly {
		ss.printf("%s NO mailbox is read-only", tag)
		return
	}
	set, err := parseSet(toks[0].text)
	if err != nil {
		ss.printf("%s BAD %v", tag, err)
		return
	}
	op := strings.ToUpper(toks[1].text)
	silent := strings.HasSuffix(op, ".SILENT")
	op = strings.TrimSuffix(op, ".SILENT")
	if op != "+FLAGS" && op != "-FLAGS" && op != "FLAGS" {
		ss.printf("%s BAD unknown STORE operation", tag)
		return
	}
	var flags []string
	if toks[2].isList {
		for _, f := range toks[2].list {
			flags = append(flags, f.text)
		}
	} else {
		flags = []string{toks[2].text}
	}
	var changed []fetched
	ss.srv.mu.Lock()
	mb := ss.boxLocked()
	for i, m := range mb.msgs {
		id, max := m.UID, mb.maxUID()
		if !byUID {
			id, max = uint32(i+1), uint32(len(mb.msgs))
		}
		if set.contains(id, max) {
			setFlags(m, op, flags)
			changed = append(changed, fetched{seq: i + 1, uid: m.UID, flags: append([]string(nil), m.Flags...)})
		}
	}
	ss.srv.mu.Unlock()
	if !silent {
		for _, m := range changed {
			ss.printf("* %d FETCH (UID %d FLAGS (%s))", m.seq, m.uid, strings.Join(m.flags, " "))
		}
	}
	ss.printf("%s OK Store completed.", tag)
}

func (ss *session) search(tag string, byUID bool, toks []token) {
	type crit func(seq int, m *Message, max uint32) bool
	var crits []crit
	for i := 0; i < len(toks); i++ {
		switch k := strings.ToUpper(toks[i].text); k {
		case "ALL":
		case "DELETED", "UNDELETED", "SEEN", "UNSEEN":
			flag := `\Deleted`
			if strings.HasSuffix(k, "SEEN") {
				flag = `\Seen`
			}
			want := !strings.HasPrefix(k, "UN")
			crits = append(crits, func(_ int, m *Message, _ uint32) bool { return m.HasFlag(flag) == want })
		case "UID":
			if i+1 >= len(toks) {
				ss.printf("%s BAD UID needs a set", tag)
				return
			}
			i++
			set, err := parseSet(toks[i].text)
			if err != nil {
				ss.printf("%s BAD %v", tag, err)
				return
			}
			crits = append(crits, func(_ int, m *Message, max uint32) bool { return set.contains(m.UID, max) })
		default:
			ss.printf("%s BAD search key %q not supported", tag, toks[i].text)
			return
		}
	}
	var hits []string
	ss.srv.mu.Lock()
	mb := ss.boxLocked()
	max := mb.maxUID()
	for i, m := range mb.msgs {
		ok := true
		for _, c := range crits {
			ok = ok && c(i+1, m, max)
		}
		if !ok {
			continue
		}
		if byUID {
			hits = append(hits, strconv.FormatUint(uint64(m.UID), 10))
		} else {
			hits = append(hits, strconv.Itoa(i+1))
		}
	}
	ss.srv.mu.Unlock()
	if len(hits) == 0 {
		ss.printf("* SEARCH")
	} else {
		ss.printf("* SEARCH %s", strings.Join(hits, " "))
	}
	ss.printf("%s OK Search completed.", tag)
}

// expunge removes \Deleted messages, all of them or those in set.
func (ss *session) expunge(tag string, respond bool, set uidSet) {
	if ss.readOnly {
		ss.printf("%s NO mailbox is read-only", tag)
		return
	}
	ss.srv.mu.Lock()
	mb := ss.boxLocked()
	max := mb.maxUID()
	seqs := mb.expunge(func(m *Message) bool { return set == nil || set.contains(m.UID, max) })
	ss.srv.mu.Unlock()
	if respond {
		for _, seq := range seqs {
			ss.printf("* %d EXPUNGE", seq)
		}
	}
	ss.printf("%s OK Expunge completed.", tag)
}

func (ss *session) copyMove(tag string, byUID, move bool, toks []token) {
	if len(toks) != 2 {
		ss.printf("%s BAD COPY set mailbox", tag)
		return
	}
	set, err := parseSet(toks[0].text)
	if err != nil {
		ss.printf("%s BAD %v", tag, err)
		return
	}
	if move && ss.readOnly {
		ss.printf("%s NO mailbox is read-only", tag)
		return
	}
	dstName := canonicalMailbox(toks[1].text)
	ss.srv.mu.Lock()
	src := ss.boxLocked()
	dst := ss.srv.accounts[ss.user].boxes[dstName]
	if dst == nil {
		ss.srv.mu.Unlock()
		ss.printf("%s NO [TRYCREATE] no such mailbox", tag)
		return
	}
	var srcUIDs, dstUIDs []string
	var seqs []int
	max := src.maxUID()
	for i := len(src.msgs) - 1; i >= 0; i-- {
		m := src.msgs[i]
		id, mx := m.UID, max
		if !byUID {
			id, mx = uint32(i+1), uint32(len(src.msgs))
		}
		if !set.contains(id, mx) {
			continue
		}
		uid := dst.append(m.Body, m.Flags)
		srcUIDs = append([]string{strconv.FormatUint(uint64(m.UID), 10)}, srcUIDs...)
		dstUIDs = append([]string{strconv.FormatUint(uint64(uid), 10)}, dstUIDs...)
		if move {
			seqs = append(seqs, i+1)
		}
	}
	if move {
		for _, seq := range seqs {
			src.msgs = append(src.msgs[:seq-1], src.msgs[seq:]...)
		}
	}
	validity := dst.uidValidity
	ss.srv.mu.Unlock()
	code := ""
	if ss.srv.hasCap("UIDPLUS") && len(srcUIDs) > 0 {
		code = fmt.Sprintf("[COPYUID %d %s %s] ", validity, strings.Join(srcUIDs, ","), strings.Join(dstUIDs, ","))
	}
	if move {
		if code != "" {
			ss.printf("* OK %sMoved", code)
		}
		for _, seq := range seqs {
			ss.printf("* %d EXPUNGE", seq)
		}
		ss.printf("%s OK Move completed.", tag)
		return
	}
	ss.printf("%s OK %sCopy completed.", tag, code)
}
