// Package soak is popbridge's load and soak engine: many concurrent POP3
// clients run mixed sessions (polls, RETR, TOP, DELE and QUIT, RSET,
// dropped connections) against a popbridge for a bounded time while a
// separate IMAP client appends and expunges mail upstream; then an exact
// accounting says whether anything was lost, corrupted, duplicated or
// wrongly deleted, and whether any client saw an error it should not have.
//
// Every message is generated from its user and serial number and carries
// them in an X-Soak-Id header, so each downloaded octet is checked against
// what was appended, and every UID's fate is known: still there, expunged
// by the IMAP client, or deleted by a POP3 session that sent QUIT with
// DELE. Run does not start popbridge or the IMAP server: bench/soak and
// the reliability tests do.
package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// User is an account on the upstream, reachable through popbridge.
type User struct{ Name, Password string }

// Config describes one run. POP3Addr, IMAPAddr, Users, Clients and
// Duration are required.
type Config struct {
	// POP3Addr is popbridge's plain POP3 listener; IMAPAddr is the
	// upstream's plain-text IMAP port, for the appender and the audit.
	POP3Addr, IMAPAddr string
	Users              []User
	// Clients is how many POP3 clients run at once.
	Clients int
	// Duration is how long clients start new sessions; MaxSessions, when
	// positive, also stops them after that many sessions in all.
	Duration    time.Duration
	MaxSessions int64
	// InitialMessages are appended to each user before the clients start.
	InitialMessages int
	// ChurnEvery is the appender's pace (default 50 ms); of its
	// operations ChurnAppendPercent are appends (default 60), the rest
	// expunges.
	ChurnEvery         time.Duration
	ChurnAppendPercent int
	// Churners is how many such IMAP clients run, each on its share of
	// the users (default 1).
	Churners int
	// ThinkTime is the longest random pause between a client's sessions
	// (default none).
	ThinkTime time.Duration
	// Mix weighs the session kinds; zero means DefaultMix.
	Mix Mix
	// OpTimeout is how long a client waits for any answer before it calls
	// the session hung (default 60 s).
	OpTimeout time.Duration
	// TolerateTemp is for runs with injected faults: -ERR [SYS/TEMP] and
	// connections closed by popbridge are counted, not reported as
	// unexpected. The audit is as strict either way.
	TolerateTemp bool
	// Seed makes the clients' choices repeatable.
	Seed uint64
	// Sample, when set, is called every SampleEvery (default 5 s) during
	// the run; Report.Samples keeps the results.
	Sample      func() Sample
	SampleEvery time.Duration
	// Logf reports progress; nil means silence.
	Logf func(format string, args ...any)
	// OnSession, when set, is called after each session (from the
	// client's goroutine) with when it started, how long it took and how
	// it ended, so that a caller can group sessions by what happened
	// around them (a replica killed, a database restarted).
	OnSession func(SessionResult)
}

// SessionResult is one finished session, for Config.OnSession.
type SessionResult struct {
	Start    time.Time
	Duration time.Duration
	Kind     Kind
	// Outcome is "ok", "temporary" (tolerated with TolerateTemp),
	// "cut-short" (closed mid-message) or "unexpected".
	Outcome string
}

// Sample is a measurement of the process under test during the run.
type Sample struct {
	At         time.Duration
	Goroutines int
	HeapBytes  uint64
	Sessions   int
}

func (c *Config) check() error {
	switch {
	case c.POP3Addr == "" || c.IMAPAddr == "":
		return errors.New("soak: POP3Addr and IMAPAddr are required")
	case len(c.Users) == 0:
		return errors.New("soak: no users")
	case c.Clients <= 0 || c.Duration <= 0:
		return errors.New("soak: Clients and Duration must be positive")
	}
	if c.ChurnEvery <= 0 {
		c.ChurnEvery = 50 * time.Millisecond
	}
	if c.ChurnAppendPercent <= 0 {
		c.ChurnAppendPercent = 60
	}
	c.Churners = min(max(c.Churners, 1), len(c.Users))
	if c.Mix == (Mix{}) {
		c.Mix = DefaultMix
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 60 * time.Second
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 5 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// Report is the outcome of a run.
type Report struct {
	Clients, Users int
	Duration       time.Duration // configured
	Elapsed        time.Duration // from the first session to the last one's end

	Sessions        int64
	ByKind          map[string]int64
	Retrieved       int64 // RETRs checked octet for octet
	Tops            int64 // TOPs checked
	VerifiedBytes   int64 // message octets checked
	ReadBytes       int64 // octets read from popbridge
	QuitOK, QuitErr int64
	Vanished        int64 // RETR/TOP of a message removed meanwhile
	CutShort        int64 // RETR/TOP closed mid-message, the message removed meanwhile
	Temporary       int64 // tolerated failures (TolerateTemp)
	Unexpected      int64
	UnexpectedFirst []string

	Appends, Expunges int
	ChurnErrors       []string

	SessionP50, SessionP99, SessionMax time.Duration
	Samples                            []Sample

	Audit *Audit
}

// OK reports whether the run found nothing wrong.
func (r *Report) OK() bool {
	return r.Unexpected == 0 && len(r.ChurnErrors) == 0 && r.Audit != nil && r.Audit.OK()
}

// Run seeds the mailboxes, runs the clients and the appender, and audits.
// An error means the run itself could not be done (the upstream refused
// the appender, say); what popbridge did wrong is in the Report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	l := newLedger()
	cfg.Logf("seeding %d users with %d messages each", len(cfg.Users), cfg.InitialMessages)
	conns, err := seed(ctx, &cfg, l)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}

	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var churnWG sync.WaitGroup
	var churnMu sync.Mutex
	var appends, expunges int
	var churnErrs []string
	for i := 0; i < cfg.Churners; i++ {
		var users []User
		own := make(map[string]*imapConn)
		for j := i; j < len(cfg.Users); j += cfg.Churners {
			users = append(users, cfg.Users[j])
			own[cfg.Users[j].Name] = conns[cfg.Users[j].Name]
		}
		churnWG.Add(1)
		go func() {
			defer churnWG.Done()
			a, e, errs := churn(runCtx, &cfg, l, rand.New(rand.NewPCG(cfg.Seed, uint64(1<<32+i))), users, own)
			churnMu.Lock()
			defer churnMu.Unlock()
			appends, expunges, churnErrs = appends+a, expunges+e, append(churnErrs, errs...)
		}()
	}

	st := &stats{}
	var started atomic.Int64
	mayStart := func() bool {
		if runCtx.Err() != nil {
			return false
		}
		return started.Add(1) <= cfg.MaxSessions || cfg.MaxSessions <= 0
	}
	t0 := time.Now()
	var samples []Sample
	sampleDone := make(chan struct{})
	if cfg.Sample != nil {
		go func() {
			defer close(sampleDone)
			tick := time.NewTicker(cfg.SampleEvery)
			defer tick.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
					s := cfg.Sample()
					s.At = time.Since(t0).Round(time.Second)
					samples = append(samples, s)
					cfg.Logf("%v: %d sessions started, %d goroutines, heap %d MiB, %d unexpected",
						s.At, started.Load(), s.Goroutines, s.HeapBytes>>20, st.unexpected.Load())
				}
			}
		}()
	} else {
		close(sampleDone)
	}

	cfg.Logf("running %d clients for %v", cfg.Clients, cfg.Duration)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		c := &client{cfg: &cfg, l: l, st: st, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)+2)), start: mayStart}
		go func() {
			defer wg.Done()
			c.run()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	stop()
	churnWG.Wait()
	<-sampleDone

	cfg.Logf("auditing")
	final, err := snapshot(&cfg)
	if err != nil {
		return nil, fmt.Errorf("soak: audit: %w", err)
	}
	r := &Report{
		Clients: cfg.Clients, Users: len(cfg.Users), Duration: cfg.Duration, Elapsed: elapsed,
		ByKind:        make(map[string]int64),
		Retrieved:     st.retrieved.Load(),
		Tops:          st.tops.Load(),
		VerifiedBytes: st.verified.Load(),
		ReadBytes:     st.read.Load(),
		QuitOK:        st.quitOK.Load(),
		QuitErr:       st.quitErr.Load(),
		Vanished:      st.vanished.Load(),
		CutShort:      st.cutShort.Load(),
		Temporary:     st.temp.Load(),
		Unexpected:    st.unexpected.Load(),
		Appends:       appends,
		Expunges:      expunges,
		ChurnErrors:   churnErrs,
		Samples:       samples,
		Audit:         l.audit(final),
	}
	r.UnexpectedFirst = st.samples
	for k := Kind(0); k < numKinds; k++ {
		n := st.sessions[k].Load()
		r.ByKind[k.String()] = n
		r.Sessions += n
	}
	d := st.durations
	slices.Sort(d)
	if len(d) > 0 {
		r.SessionP50, r.SessionP99, r.SessionMax = d[len(d)/2], d[len(d)*99/100], d[len(d)-1]
	}
	return r, nil
}

// String is the report as a few lines of text.
func (r *Report) String() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("clients %d, users %d, duration %v (elapsed %v)", r.Clients, r.Users, r.Duration, r.Elapsed.Round(time.Millisecond))
	kinds := make([]string, 0, len(r.ByKind))
	for k := Kind(0); k < numKinds; k++ {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.ByKind[k.String()]))
	}
	p("sessions %d (%.0f/s): %s", r.Sessions, float64(r.Sessions)/r.Elapsed.Seconds(), strings.Join(kinds, ", "))
	p("session time p50 %v, p99 %v, max %v", r.SessionP50.Round(time.Millisecond), r.SessionP99.Round(time.Millisecond), r.SessionMax.Round(time.Millisecond))
	p("verified: %d RETR, %d TOP, %d MiB of message octets (%d MiB read)", r.Retrieved, r.Tops, r.VerifiedBytes>>20, r.ReadBytes>>20)
	p("QUIT +OK %d, -ERR %d; vanished under a session %d, cut mid-message by an expunge %d; tolerated temporary failures %d",
		r.QuitOK, r.QuitErr, r.Vanished, r.CutShort, r.Temporary)
	p("IMAP client: %d appends, %d expunges, %d errors", r.Appends, r.Expunges, len(r.ChurnErrors))
	if a := r.Audit; a != nil {
		p("audit: %d stored, %d present, %d expunged by IMAP, %d deleted by POP3 QUIT, %d by a failed QUIT",
			a.Stored, a.Present, a.ExpungedIMP, a.DeletedPOP3, a.MaybePOP3)
		p("audit: lost %d, corrupt %d, unknown %d, deleted-but-present %d, wrong-message %d",
			len(a.Lost), len(a.Corrupt), len(a.Unknown), len(a.NotDone), len(a.BadClaims))
		for _, list := range [][]string{a.Lost, a.Corrupt, a.Unknown, a.NotDone, a.BadClaims} {
			for i, s := range list {
				if i == 10 {
					p("  ...")
					break
				}
				p("  %s", s)
			}
		}
	}
	p("unexpected errors: %d", r.Unexpected)
	for _, s := range r.UnexpectedFirst {
		p("  %s", s)
	}
	for i, s := range r.ChurnErrors {
		if i == 10 {
			break
		}
		p("  IMAP client: %s", s)
	}
	for _, s := range r.Samples {
		p("sample %v: %d goroutines, heap %d KiB, %d sessions", s.At, s.Goroutines, s.HeapBytes>>10, s.Sessions)
	}
	if r.OK() {
		p("OK")
	} else {
		p("FAILED")
	}
	return b.String()
}
