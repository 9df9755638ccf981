package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapTimeout bounds one IMAP operation of the appender and the audit.
const imapTimeout = 30 * time.Second

// imapConn is a plain-text IMAP connection logged in as one user with
// INBOX selected; closing nc is the sure way to unblock the client.
type imapConn struct {
	c  *imapclient.Client
	nc net.Conn
}

func dialIMAP(addr string, u User) (*imapConn, uint32, error) {
	nc, err := net.DialTimeout("tcp", addr, imapTimeout)
	if err != nil {
		return nil, 0, fmt.Errorf("imap dial: %w", err)
	}
	c := imapclient.New(nc, nil)
	ic := &imapConn{c: c, nc: nc}
	var validity uint32
	err = ic.guard(func() error {
		if err := c.Login(u.Name, u.Password).Wait(); err != nil {
			return fmt.Errorf("imap login %s: %w", u.Name, err)
		}
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			return fmt.Errorf("imap select: %w", err)
		}
		validity = sel.UIDValidity
		return nil
	})
	if err != nil {
		ic.close()
		return nil, 0, err
	}
	return ic, validity, nil
}

// guard runs f with the connection cut after imapTimeout.
func (ic *imapConn) guard(f func() error) error {
	t := time.AfterFunc(imapTimeout, func() { ic.nc.Close() })
	defer t.Stop()
	return f()
}

func (ic *imapConn) close() {
	ic.nc.Close()
	ic.c.Close()
}

func (ic *imapConn) append(msg []byte) (uint32, error) {
	var uid uint32
	err := ic.guard(func() error {
		cmd := ic.c.Append("INBOX", int64(len(msg)), nil)
		if _, err := cmd.Write(msg); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		data, err := cmd.Wait()
		if err != nil {
			return err
		}
		if data.UID == 0 {
			return fmt.Errorf("APPEND: no APPENDUID")
		}
		uid = uint32(data.UID)
		return nil
	})
	return uid, err
}

// expunge removes exactly uid, as another mail client would.
func (ic *imapConn) expunge(uid uint32) error {
	return ic.guard(func() error {
		set := imap.UIDSetNum(imap.UID(uid))
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
		if err := ic.c.Store(set, store, nil).Close(); err != nil {
			return err
		}
		return ic.c.UIDExpunge(set).Close()
	})
}

// contents returns INBOX as UID -> octets, without marking anything seen.
func (ic *imapConn) contents() (map[uint32][]byte, error) {
	out := make(map[uint32][]byte)
	err := ic.guard(func() error {
		sel, err := ic.c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sel.NumMessages == 0 {
			return err
		}
		body := &imap.FetchItemBodySection{Peek: true}
		msgs, err := ic.c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
			UID: true, BodySection: []*imap.FetchItemBodySection{body},
		}).Collect()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			out[uint32(m.UID)] = m.FindBodySection(body)
		}
		return nil
	})
	return out, err
}

// seed appends n messages to every user's INBOX, a few users at a time,
// and records each UIDVALIDITY. It returns the connections it opened, one
// per user, for churn: logging in again under load would starve it.
func seed(ctx context.Context, cfg *Config, l *ledger) (map[string]*imapConn, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := make(map[string]*imapConn)
	errs := make(chan error, len(cfg.Users))
	sem := make(chan struct{}, 8)
	for _, u := range cfg.Users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ic, validity, err := dialIMAP(cfg.IMAPAddr, u)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			conns[u.Name] = ic
			mu.Unlock()
			l.mu.Lock()
			l.uidValidity[u.Name] = validity
			l.mu.Unlock()
			for i := 0; i < cfg.InitialMessages && ctx.Err() == nil; i++ {
				serial := l.serial(u.Name)
				uid, err := ic.append(messageBody(u.Name, serial))
				if err != nil {
					errs <- fmt.Errorf("seeding %s: %w", u.Name, err)
					return
				}
				l.store(u.Name, uid, serial)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		for _, ic := range conns {
			ic.close()
		}
		return nil, err
	}
	return conns, nil
}

// churn is the "separate IMAP client": until ctx ends it appends new mail
// and expunges old mail, a random one of users at a time, every
// cfg.ChurnEvery, over the connections conns (one per user, reopened when
// they fail). It returns how many of each it did and the errors it met.
func churn(ctx context.Context, cfg *Config, l *ledger, rng *rand.Rand, users []User, conns map[string]*imapConn) (appends, expunges int, errs []string) {
	defer func() {
		for _, ic := range conns {
			ic.close()
		}
	}()
	tick := time.NewTicker(cfg.ChurnEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		u := users[rng.IntN(len(users))]
		ic := conns[u.Name]
		if ic == nil {
			var err error
			if ic, _, err = dialIMAP(cfg.IMAPAddr, u); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			conns[u.Name] = ic
		}
		var err error
		if rng.IntN(100) < cfg.ChurnAppendPercent {
			serial := l.serial(u.Name)
			var uid uint32
			if uid, err = ic.append(messageBody(u.Name, serial)); err == nil {
				l.store(u.Name, uid, serial)
				appends++
			}
		} else if uid, ok := l.pick(u.Name, rng.IntN(1<<30)); ok {
			k := msgKey{u.Name, uid}
			if err = ic.expunge(uid); err == nil {
				l.mark(l.expunged, k)
				expunges++
			} else {
				l.mark(l.maybe, k) // it may have gone through
			}
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("imap %s: %v", u.Name, err))
			ic.close()
			delete(conns, u.Name)
		}
	}
}

// snapshot reads every user's INBOX for the audit.
func snapshot(cfg *Config) (map[string]map[uint32][]byte, error) {
	final := make(map[string]map[uint32][]byte)
	for _, u := range cfg.Users {
		ic, _, err := dialIMAP(cfg.IMAPAddr, u)
		if err != nil {
			return nil, err
		}
		msgs, err := ic.contents()
		ic.close()
		if err != nil {
			return nil, fmt.Errorf("reading %s's INBOX: %w", u.Name, err)
		}
		final[u.Name] = msgs
	}
	return final, nil
}
