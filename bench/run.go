package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testing/testenv"
)

// Run seeds the mailboxes, starts the three servers and measures every
// scenario of cfg, returning the medians and the targets' verdicts.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, time.Now().Format("15:04:05 ")+format+"\n", args...)
		}
	}
	if cfg.Reps < 1 {
		cfg.Reps = 1
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "popbench-")
		if err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	} else if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}

	binary := cfg.BridgeBinary
	if binary == "" {
		logf("building popbridge")
		var err error
		if binary, err = buildBridge(ctx, cfg.ModuleRoot, cfg.WorkDir); err != nil {
			return nil, err
		}
	}

	boxes, specs := plan(cfg)
	var users []testenv.User
	for _, b := range boxes {
		users = append(users, testenv.User{Name: b.User, Password: b.Password})
	}
	logf("starting the upstream Dovecot, the imapc Dovecot and popbridge")
	e, err := startEnv(cfg, users, binary)
	if err != nil {
		return nil, err
	}
	defer e.stop()

	start := time.Now()
	if err := seed(e, boxes, specs); err != nil {
		return nil, err
	}
	logf("seeded %d mailboxes in %v", len(boxes), time.Since(start).Round(time.Millisecond))

	r := &runner{cfg: cfg, env: e, boxes: map[string]*Mailbox{}}
	for _, b := range boxes {
		r.boxes[b.User] = &b.Mailbox
		if b.idle {
			r.idle = append(r.idle, &b.Mailbox)
		}
	}
	list, err := selectScenarios(r.scenarios(), cfg.Scenarios)
	if err != nil {
		return nil, err
	}

	rep := newReport(cfg, e)
	for _, s := range list {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		for _, box := range s.boxes {
			for _, server := range Servers {
				if _, err := pollSession(e.addrs[server], box); err != nil {
					rep.add(s.name, server, Result{Errors: 1, FirstError: "warm-up: " + err.Error()})
				}
			}
		}
		for i := range cfg.Reps {
			for _, server := range Servers {
				res := s.run(r, server)
				logf("%s round %d %s: %s", s.name, i+1, server, res.summary())
				rep.add(s.name, server, res)
			}
		}
	}
	rep.finish()
	return rep, nil
}

// seedBox is a Mailbox with what seeding needs.
type seedBox struct {
	Mailbox
	idle bool
}

// plan names the run's mailboxes and what each holds.
func plan(cfg Config) ([]*seedBox, [][]BoxSpec) {
	var boxes []*seedBox
	var specs [][]BoxSpec
	add := func(user string, seen, idle bool, s ...BoxSpec) {
		boxes = append(boxes, &seedBox{Mailbox: Mailbox{User: user, Password: "pw-" + user, Seen: seen}, idle: idle})
		specs = append(specs, s)
	}
	for _, count := range cfg.PollCounts {
		add(pollUser(count), false, false, BoxSpec{Count: count, Size: cfg.PollMsgSize})
	}
	add("small", true, false, cfg.Small)
	add("large", true, false, cfg.Large...)
	add("huge", true, false, BoxSpec{Count: 1, Size: cfg.HugeSize})
	for i := range cfg.IdleSessions {
		add(fmt.Sprintf("idle%04d", i), false, true, BoxSpec{Count: cfg.IdleMessages, Size: 2 << 10})
	}
	return boxes, specs
}

// seed writes every mailbox into the upstream's maildirs, then has Dovecot
// index each one (one SELECT) and checks that it found every message.
func seed(e *env, boxes []*seedBox, specs [][]BoxSpec) error {
	for i, b := range boxes {
		if err := seedMaildir(filepath.Join(e.up.Dir, "home", b.User), &b.Mailbox, specs[i]); err != nil {
			return err
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(boxes) || errs[w] != nil {
					return
				}
				errs[w] = indexBox(e.up, &boxes[i].Mailbox)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// indexBox selects the mailbox once, so that Dovecot assigns the UIDs and
// builds its index before anything is measured.
func indexBox(d *testenv.Dovecot, box *Mailbox) error {
	c, err := d.Login(box.User)
	if err != nil {
		return err
	}
	defer c.Close()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("index %s: %w", box.User, err)
	}
	if int(sel.NumMessages) != len(box.Messages) {
		return fmt.Errorf("index %s: Dovecot found %d messages, seeded %d", box.User, sel.NumMessages, len(box.Messages))
	}
	return c.Logout().Wait()
}

func (r Result) summary() string {
	s := ""
	for _, k := range metricOrder {
		if v, ok := r.Metrics[k]; ok {
			s += fmt.Sprintf("%s=%.4g ", k, v)
		}
	}
	s += fmt.Sprintf("verified=%d errors=%d", r.Verified, r.Errors)
	if r.FirstError != "" {
		s += " first error: " + r.FirstError
	}
	return s
}
