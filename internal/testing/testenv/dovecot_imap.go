package testenv

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// helperTimeout bounds each helper's whole IMAP session, so a stuck Dovecot
// fails the test instead of hanging it until go test's timeout.
const helperTimeout = 30 * time.Second

// StoredMessage is a message as Dovecot stores it.
type StoredMessage struct {
	UID   imap.UID
	Flags []imap.Flag
	Size  int64  // RFC822.SIZE
	Body  []byte // BODY.PEEK[] byte for byte (Dovecot serves CRLF line ends)
}

// TLSConfig returns a client configuration that trusts CAFile, for
// IMAPSAddr and STARTTLS on IMAPAddr. The certificate is valid for
// 127.0.0.1, ::1 and localhost.
func (d *Dovecot) TLSConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(d.CAFile)
	if err != nil {
		return nil, fmt.Errorf("dovecot tls config: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("dovecot tls config: no certificate in %s", d.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Login returns a go-imap client connected to IMAPAddr without TLS and
// logged in as user; the caller closes it.
func (d *Dovecot) Login(user string) (*imapclient.Client, error) {
	c, _, err := d.login(user)
	return c, err
}

// login is Login, also returning the raw connection: closing it is the
// only sure way to abort a go-imap client stuck in a command.
func (d *Dovecot) login(user string) (*imapclient.Client, net.Conn, error) {
	pw, err := d.password(user)
	if err != nil {
		return nil, nil, fmt.Errorf("imap login: %w", err)
	}
	conn, err := net.DialTimeout("tcp", d.IMAPAddr, 10*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("imap dial: %w", err)
	}
	c := imapclient.New(conn, nil)
	if err := c.Login(user, pw).Wait(); err != nil {
		_ = conn.Close()
		_ = c.Close()
		return nil, nil, fmt.Errorf("imap login %s as %s: %w", d.IMAPAddr, user, err)
	}
	return c, conn, nil
}

// Client is Login for tests: the client is closed when the test ends.
func (d *Dovecot) Client(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	c, err := d.Login(user)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// session runs fn on a fresh client logged in as user and logs out. The
// session is cut after helperTimeout.
func (d *Dovecot) session(user string, fn func(c *imapclient.Client) error) error {
	c, conn, err := d.login(user)
	if err != nil {
		return err
	}
	watchdog := time.AfterFunc(helperTimeout, func() { _ = conn.Close() })
	defer watchdog.Stop()
	defer c.Close()
	if err := fn(c); err != nil {
		return err
	}
	if err := c.Logout().Wait(); err != nil {
		return fmt.Errorf("imap logout: %w", err)
	}
	return nil
}

// AppendMessage is Append for programs without a testing.TB.
func (d *Dovecot) AppendMessage(user, mailbox string, msg []byte, flags ...imap.Flag) (imap.UID, error) {
	var uid imap.UID
	err := d.session(user, func(c *imapclient.Client) error {
		if !strings.EqualFold(mailbox, "INBOX") {
			err := c.Create(mailbox, nil).Wait()
			var imapErr *imap.Error
			if err != nil && !(errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeAlreadyExists) {
				return fmt.Errorf("create %q: %w", mailbox, err)
			}
		}
		cmd := c.Append(mailbox, int64(len(msg)), &imap.AppendOptions{Flags: flags})
		if _, err := cmd.Write(msg); err != nil {
			return fmt.Errorf("append to %q: %w", mailbox, err)
		}
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("append to %q: %w", mailbox, err)
		}
		data, err := cmd.Wait()
		if err != nil {
			return fmt.Errorf("append to %q: %w", mailbox, err)
		}
		if data.UID == 0 {
			return fmt.Errorf("append to %q: no APPENDUID in the answer", mailbox)
		}
		uid = data.UID
		return nil
	})
	return uid, err
}

// Append stores msg in user's mailbox, creating the mailbox if missing, and
// returns its UID.
func (d *Dovecot) Append(t testing.TB, user, mailbox string, msg []byte, flags ...imap.Flag) imap.UID {
	t.Helper()
	uid, err := d.AppendMessage(user, mailbox, msg, flags...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return uid
}

// Messages returns every message in user's mailbox in UID order, without
// setting \Seen.
func (d *Dovecot) Messages(t testing.TB, user, mailbox string) []StoredMessage {
	t.Helper()
	var msgs []StoredMessage
	err := d.session(user, func(c *imapclient.Client) error {
		sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return fmt.Errorf("examine %q: %w", mailbox, err)
		}
		if sel.NumMessages == 0 {
			return nil
		}
		body := &imap.FetchItemBodySection{Peek: true}
		bufs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
			UID: true, Flags: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{body},
		}).Collect()
		if err != nil {
			return fmt.Errorf("fetch %q: %w", mailbox, err)
		}
		for _, buf := range bufs {
			msgs = append(msgs, StoredMessage{
				UID:   buf.UID,
				Flags: buf.Flags,
				Size:  buf.RFC822Size,
				Body:  buf.FindBodySection(body),
			})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: messages of %s/%s: %v", user, mailbox, err)
	}
	slices.SortFunc(msgs, func(a, b StoredMessage) int { return cmp.Compare(a.UID, b.UID) })
	return msgs
}

// UIDValidity returns the UIDVALIDITY of user's mailbox.
func (d *Dovecot) UIDValidity(t testing.TB, user, mailbox string) uint32 {
	t.Helper()
	var v uint32
	err := d.session(user, func(c *imapclient.Client) error {
		st, err := c.Status(mailbox, &imap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil {
			return fmt.Errorf("status %q: %w", mailbox, err)
		}
		v = st.UIDValidity
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: uidvalidity of %s/%s: %v", user, mailbox, err)
	}
	return v
}

// Expunge removes the messages uids from user's mailbox as another IMAP
// client would: UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE of
// exactly those UIDs.
func (d *Dovecot) Expunge(t testing.TB, user, mailbox string, uids ...imap.UID) {
	t.Helper()
	if len(uids) == 0 {
		return
	}
	set := imap.UIDSetNum(uids...)
	err := d.session(user, func(c *imapclient.Client) error {
		if _, err := c.Select(mailbox, nil).Wait(); err != nil {
			return fmt.Errorf("select %q: %w", mailbox, err)
		}
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
		if err := c.Store(set, store, nil).Close(); err != nil {
			return fmt.Errorf("store \\Deleted: %w", err)
		}
		if err := c.UIDExpunge(set).Close(); err != nil {
			return fmt.Errorf("uid expunge: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: expunge %v from %s/%s: %v", uids, user, mailbox, err)
	}
}

// SetFlags adds flags to message uid in user's mailbox.
func (d *Dovecot) SetFlags(t testing.TB, user, mailbox string, uid imap.UID, flags ...imap.Flag) {
	t.Helper()
	err := d.session(user, func(c *imapclient.Client) error {
		if _, err := c.Select(mailbox, nil).Wait(); err != nil {
			return fmt.Errorf("select %q: %w", mailbox, err)
		}
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}
		if err := c.Store(imap.UIDSetNum(uid), store, nil).Close(); err != nil {
			return fmt.Errorf("store %v: %w", flags, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: set flags on %s/%s UID %d: %v", user, mailbox, uid, err)
	}
}

// RebuildIndex deletes Dovecot's index and UID list of user's INBOX, as an
// admin repairing a mailbox does: the messages stay, and Dovecot numbers
// them again under a new UIDVALIDITY, which is the current time (so the
// clock must first pass the old one).
func (d *Dovecot) RebuildIndex(t testing.TB, user string) {
	t.Helper()
	old := d.UIDValidity(t, user, "INBOX")
	for time.Now().Unix() <= int64(old) {
		time.Sleep(50 * time.Millisecond)
	}
	files, _ := filepath.Glob(filepath.Join(d.Dir, "home", user, "Maildir", "dovecot*"))
	for _, f := range files {
		if err := os.RemoveAll(f); err != nil {
			t.Fatal(err)
		}
	}
	if v := d.UIDValidity(t, user, "INBOX"); v == old {
		t.Fatalf("testenv: UIDVALIDITY %d unchanged after removing %v", v, files)
	}
}
