package bench

import (
	"fmt"
	"path/filepath"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// Seed writes specs' messages into the maildir of box.User on d (a
// testenv Dovecot that knows the user), has Dovecot index them, and fills
// box.Messages with what a POP3 server must deliver.
func Seed(d *testenv.Dovecot, box *Mailbox, specs ...BoxSpec) error {
	if err := seedMaildir(filepath.Join(d.Dir, "home", box.User), box, specs); err != nil {
		return err
	}
	return indexBox(d, box)
}

// Poll runs one device poll on the POP3 server at addr: connect,
// USER/PASS, STAT, UIDL, QUIT, with STAT and the UIDL count checked
// against box.
func Poll(addr string, box *Mailbox) error {
	_, err := pollSession(addr, box)
	return err
}

// Download fetches every message of box in one session with RETR n (TOP
// n 0 when top) and compares each with the seeded bytes; it returns the
// octets received.
func Download(addr string, box *Mailbox, top bool) (int64, error) {
	var res Result
	n, err := downloadSession(addr, box, top, &res)
	if err == nil && res.Errors > 0 {
		err = fmt.Errorf("%d messages differ from the seeded ones, first: %s", res.Errors, res.FirstError)
	}
	return n, err
}

// FastLoginConfig is the DovecotOptions.ExtraConfig popbench gives both
// Dovecots unless -process-per-session.
const FastLoginConfig = fastLoginConfig
