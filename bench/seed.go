package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// Mailbox is one seeded account: its credentials and, for message n, what
// a server must deliver (Messages[n-1]).
type Mailbox struct {
	User, Password string
	Messages       []Expected
	// Seen marks every message \Seen at seeding, so that downloads, which
	// set \Seen at QUIT on all three servers, change nothing between
	// repetitions.
	Seen bool
}

// TotalSize is the sum of the message sizes, as STAT must report it.
func (m *Mailbox) TotalSize() int64 {
	var n int64
	for _, e := range m.Messages {
		n += e.Full.Size
	}
	return n
}

// BoxSpec describes the messages of a mailbox to seed: Count messages of
// Size octets each, in order.
type BoxSpec struct {
	Count int
	Size  int64
}

// seedMaildir writes the messages of specs, in order, as files into
// home/Maildir/cur of a testenv Dovecot, the way Dovecot's own delivery
// names them: S= is the file size (LF line ends), W= the size with CRLF,
// which is what IMAP RFC822.SIZE and POP3 report; Dovecot then needs to
// read no file to list the mailbox. Dovecot gives new files UIDs in file
// name order, which the fixed-width names make the order written here.
// Files are written by several goroutines, since 50,000 of them are.
func seedMaildir(home string, box *Mailbox, specs []BoxSpec) error {
	maildir := filepath.Join(home, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o700); err != nil {
			return fmt.Errorf("seed %s: %w", box.User, err)
		}
	}
	var all []int64
	for _, s := range specs {
		for range s.Count {
			all = append(all, s.Size)
		}
	}
	box.Messages = make([]Expected, len(all))
	info := ":2,"
	if box.Seen {
		info = ":2,S"
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, runtime.NumCPU())
	for range cap(errs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				spec := MessageSpec{Box: box.User, Seq: i + 1, Size: all[i]}
				exp, err := writeMaildirFile(maildir, i, spec, info)
				if err != nil {
					errs <- fmt.Errorf("seed %s message %d: %w", box.User, i+1, err)
					return
				}
				box.Messages[i] = exp
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// As root, Dovecot's processes run as nobody and must own their mail.
	return testenv.ChownUnprivileged(home)
}

// writeMaildirFile writes one message into tmp/, then renames it into cur/
// under its final name, which carries the sizes Dovecot would compute.
func writeMaildirFile(maildir string, i int, spec MessageSpec, info string) (Expected, error) {
	tmp := filepath.Join(maildir, "tmp", fmt.Sprintf("popbench.%d", i))
	f, err := os.Create(tmp)
	if err != nil {
		return Expected{}, err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	exp, err := WriteMessage(w, spec, "\n")
	if err == nil {
		err = w.Flush()
	}
	var st os.FileInfo
	if err == nil {
		st, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return Expected{}, err
	}
	// Time stamps 1,000,000,000 + i keep every name 10 digits wide.
	name := fmt.Sprintf("%d.M%06dP1.popbench,S=%d,W=%d%s", 1_000_000_000+i, i, st.Size(), exp.Full.Size, info)
	return exp, os.Rename(tmp, filepath.Join(maildir, "cur", name))
}
