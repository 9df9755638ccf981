package bench

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one measurement of one server in one scenario.
type Result struct {
	// Metrics by key (see metricInfo).
	Metrics map[string]float64
	// Errors counts failed sessions and commands, and bytes that differed
	// from the seeded content; FirstError describes the first.
	Errors     int
	FirstError string
	// Verified counts the message octets compared with the seeded content.
	Verified int64
	// UIDLs identifies the UIDL listing, to compare servers.
	UIDLs Sum
	// Load is the 1-minute load average when the measurement started.
	Load float64 `json:",omitempty"`
}

func (r *Result) fail(err error) {
	r.Errors++
	if r.FirstError == "" {
		r.FirstError = err.Error()
	}
}

// scenario is one measured situation.
type scenario struct {
	name string
	// boxes are polled once on every server before the first round, so
	// that each server's indexes and caches are warm, as they are for a
	// device polling every minute.
	boxes []*Mailbox
	run   func(b *runner, server string) Result
}

// runner holds a run's environment and seeded mailboxes.
type runner struct {
	cfg   Config
	env   *env
	boxes map[string]*Mailbox
	idle  []*Mailbox
}

func countLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func pollName(count, clients int) string {
	return fmt.Sprintf("poll-%s-c%d", countLabel(count), clients)
}

// scenarios lists the run's scenarios in running order: memory first,
// while popbridge's heap is still small, so that growth is its own.
func (b *runner) scenarios() []scenario {
	cfg := b.cfg
	small, large, huge := b.boxes["small"], b.boxes["large"], b.boxes["huge"]
	list := []scenario{
		{name: fmt.Sprintf("idle-%d", cfg.IdleSessions), run: (*runner).idleSessions},
		{name: "retr-huge", boxes: []*Mailbox{huge}, run: func(b *runner, s string) Result { return b.retrHuge(s, huge) }},
		{name: "top-" + countLabel(cfg.Small.Count), boxes: []*Mailbox{small}, run: func(b *runner, s string) Result { return b.download(s, small, true) }},
		{name: "download-small", boxes: []*Mailbox{small}, run: func(b *runner, s string) Result { return b.download(s, small, false) }},
		{name: "download-large", boxes: []*Mailbox{large}, run: func(b *runner, s string) Result { return b.download(s, large, false) }},
	}
	for _, count := range cfg.PollCounts {
		box := b.boxes[pollUser(count)]
		for _, clients := range cfg.PollClients {
			list = append(list, scenario{
				name:  pollName(count, clients),
				boxes: []*Mailbox{box},
				run:   func(b *runner, s string) Result { return b.poll(s, box, clients) },
			})
		}
	}
	return list
}

func pollUser(count int) string { return "poll" + countLabel(count) }

// pollSession is one device poll: connect, USER/PASS, STAT, UIDL, QUIT,
// with STAT and UIDL checked against the seeded mailbox.
func pollSession(addr string, box *Mailbox) (Sum, error) {
	c, err := dialPOP(addr)
	if err != nil {
		return Sum{}, err
	}
	defer c.Close()
	if err := c.login(box.User, box.Password); err != nil {
		return Sum{}, err
	}
	n, size, err := c.stat()
	if err != nil {
		return Sum{}, err
	}
	if n != len(box.Messages) || size != box.TotalSize() {
		return Sum{}, fmt.Errorf("STAT %d %d, seeded %d %d", n, size, len(box.Messages), box.TotalSize())
	}
	lines, sum, err := c.uidl()
	if err != nil {
		return Sum{}, err
	}
	if lines != n {
		return Sum{}, fmt.Errorf("UIDL: %d lines for %d messages", lines, n)
	}
	return sum, c.quit()
}

// poll runs pollSession from clients concurrent clients for
// PollDuration, and at least PollMinSessions times.
func (b *runner) poll(server string, box *Mailbox, clients int) Result {
	addr := b.env.addrs[server]
	var (
		mu   sync.Mutex
		res  = Result{Metrics: map[string]float64{}}
		lats []time.Duration
		runs atomic.Int64
	)
	minRuns := int64(max(b.cfg.PollMinSessions, clients))
	res.Load = loadAvg()
	cpu := b.startCPU(server)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < b.cfg.PollDuration || runs.Load() < minRuns {
				runs.Add(1)
				t0 := time.Now()
				sum, err := pollSession(addr, box)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.fail(err)
				} else {
					lats = append(lats, d)
					res.UIDLs = sum
				}
				tooMany := res.Errors > 100
				mu.Unlock()
				if tooMany {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu.done(&res, "cpu_ms_per_session", float64(len(lats)))
	slices.Sort(lats)
	res.Metrics["p50_ms"] = ms(percentile(lats, 50))
	res.Metrics["p99_ms"] = ms(percentile(lats, 99))
	res.Metrics["sessions_per_s"] = float64(len(lats)) / elapsed.Seconds()
	res.Metrics["sessions"] = float64(len(lats))
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// download fetches every message of box in one session, with RETR n, or
// with TOP n 0 when top, comparing each with the seeded bytes.
func (b *runner) download(server string, box *Mailbox, top bool) Result {
	res := Result{Metrics: map[string]float64{}, Load: loadAvg()}
	cpu := b.startCPU(server)
	start := time.Now()
	bytes, err := downloadSession(b.env.addrs[server], box, top, &res)
	elapsed := time.Since(start)
	if err != nil {
		res.fail(err)
		return res
	}
	res.Metrics["seconds"] = elapsed.Seconds()
	if top {
		res.Metrics["msgs_per_s"] = float64(len(box.Messages)) / elapsed.Seconds()
		cpu.done(&res, "cpu_ms_per_1k_msgs", float64(len(box.Messages))/1000)
	} else {
		res.Metrics["mb_per_s"] = float64(bytes) / 1e6 / elapsed.Seconds()
		cpu.done(&res, "cpu_ms_per_mb", float64(bytes)/1e6)
	}
	return res
}

// downloadSession logs in, fetches every message and quits; it returns
// the octets received. Mismatches are counted in res.
func downloadSession(addr string, box *Mailbox, top bool, res *Result) (int64, error) {
	c, err := dialPOP(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.login(box.User, box.Password); err != nil {
		return 0, err
	}
	n, _, err := c.stat()
	if err != nil {
		return 0, err
	}
	if n != len(box.Messages) {
		return 0, fmt.Errorf("STAT: %d messages, seeded %d", n, len(box.Messages))
	}
	var total int64
	for i, exp := range box.Messages {
		cmd, want := fmt.Sprintf("RETR %d", i+1), exp.Full
		if top {
			cmd, want = fmt.Sprintf("TOP %d 0", i+1), exp.Header
		}
		got, err := c.body(cmd)
		if err != nil {
			return total, err
		}
		total += got.Size
		if got != want {
			res.fail(fmt.Errorf("%s of %s: %d octets, hash %x; seeded %d octets, hash %x",
				cmd, box.User, got.Size, got.Hash, want.Size, want.Hash))
			continue
		}
		res.Verified += got.Size
	}
	return total, c.quit()
}

// retrHuge RETRs the one huge message while sampling the server's
// resident memory: for popbridge its VmHWM, reset just before, and for
// the Dovecots the sum over their processes every 20 ms.
func (b *runner) retrHuge(server string, box *Mailbox) Result {
	if err := b.fresh(server); err != nil {
		return Result{Errors: 1, FirstError: err.Error()}
	}
	sample, final, err := b.memProbe(server)
	if err != nil {
		return Result{Errors: 1, FirstError: err.Error()}
	}
	base := sample()
	peak := atomic.Int64{}
	peak.Store(base)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if v := sample(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	res := b.download(server, box, false)
	close(stop)
	<-sampled
	p := max(peak.Load(), final())
	res.Metrics["peak_growth_mib"] = float64(p-base) / (1 << 20)
	return res
}

// memProbe returns how to read a server's resident memory now, and its
// peak since the probe was made (the last sample where no peak is kept).
func (b *runner) memProbe(server string) (now, peak func() int64, err error) {
	if server == Popbridge {
		pid := b.env.bridgePID()
		if err := resetPeakRSS(pid); err != nil {
			return nil, nil, fmt.Errorf("reset popbridge VmHWM: %w", err)
		}
		now = func() int64 { v, _ := procStatus(pid, "VmRSS"); return v }
		peak = func() int64 { v, _ := procStatus(pid, "VmHWM"); return v }
		return now, peak, nil
	}
	pgid := b.env.upPGID
	if server == IMAPC {
		pgid = b.env.imapcPGID
	}
	now = func() int64 { m, _ := groupMem(pgid); return m.RSS }
	return now, now, nil
}

// idleSessions opens IdleSessions logged-in sessions, each on its own
// user, holds them all, measures memory, checks that every one still
// answers NOOP, and quits them.
func (b *runner) idleSessions(server string) Result {
	if err := b.fresh(server); err != nil {
		return Result{Errors: 1, FirstError: err.Error()}
	}
	res := Result{Metrics: map[string]float64{}, Load: loadAvg()}
	addr := b.env.addrs[server]
	ownBefore, upBefore := b.serverMem(server)

	conns := make([]*popConn, len(b.idle))
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 20 { // openers: logins in parallel, as devices would
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(b.idle) {
					return
				}
				c, err := openIdle(addr, b.idle[i])
				mu.Lock()
				if err != nil {
					res.fail(fmt.Errorf("session %d: %w", i, err))
				} else {
					conns[i] = c
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // let the servers settle
	ownAfter, upAfter := b.serverMem(server)

	held := 0
	for _, c := range conns {
		if c == nil {
			continue
		}
		if _, err := c.cmd("NOOP"); err != nil {
			res.fail(fmt.Errorf("held session: %w", err))
			continue
		}
		held++
	}
	var qwg sync.WaitGroup
	for i, c := range conns {
		if c == nil {
			continue
		}
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			if err := c.quit(); err != nil {
				mu.Lock()
				res.fail(fmt.Errorf("session %d QUIT: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	qwg.Wait()

	per := func(v int64) float64 { return float64(v) / 1024 / float64(max(held, 1)) }
	own := ownAfter.Sub(ownBefore)
	total := own
	if server != Native {
		total = Mem{PSS: own.PSS + upAfter.PSS - upBefore.PSS, RSS: own.RSS + upAfter.RSS - upBefore.RSS}
	}
	res.Metrics["held"] = float64(held)
	res.Metrics["own_pss_kib"] = per(own.PSS)
	res.Metrics["own_rss_kib"] = per(own.RSS)
	res.Metrics["total_pss_kib"] = per(total.PSS)
	res.Metrics["total_rss_kib"] = per(total.RSS)
	return res
}

// cpuUsed returns the CPU time the server itself (as serverMem counts it)
// and the upstream Dovecot have used so far.
func (b *runner) cpuUsed(server string) (own, up time.Duration) {
	up = groupCPU(b.env.upPGID)
	switch server {
	case Popbridge:
		own, _ = procCPU(b.env.bridgePID())
	case Native:
		own = up
	case IMAPC:
		own = groupCPU(b.env.imapcPGID)
	}
	return own, up
}

// cpuMeter measures CPU time from its creation to done, which records it
// in res per unit of work: the server's own, and with the upstream's
// added for the two servers that read the upstream over IMAP.
type cpuMeter struct {
	b         *runner
	server    string
	own0, up0 time.Duration
}

func (b *runner) startCPU(server string) *cpuMeter {
	m := &cpuMeter{b: b, server: server}
	m.own0, m.up0 = b.cpuUsed(server)
	return m
}

func (m *cpuMeter) done(res *Result, key string, units float64) {
	own1, up1 := m.b.cpuUsed(m.server)
	own := own1 - m.own0
	total := own
	if m.server != Native {
		total += up1 - m.up0
	}
	if units > 0 {
		res.Metrics[key] = ms(own) / units
		res.Metrics["total_"+key] = ms(total) / units
	}
}

// fresh prepares a memory measurement: a new popbridge process, and no
// Dovecot mail process left from earlier sessions, so that each round
// measures its own sessions, not memory kept from the previous ones.
func (b *runner) fresh(server string) error {
	if server == Popbridge {
		if err := b.env.restartBridge(); err != nil {
			return err
		}
	}
	return b.env.waitDovecotIdle(15 * time.Second)
}

// serverMem returns the memory of the server itself (popbridge's process,
// or all processes of the Dovecot serving the POP3 port) and of the
// upstream Dovecot.
func (b *runner) serverMem(server string) (own, up Mem) {
	up, _ = groupMem(b.env.upPGID)
	switch server {
	case Popbridge:
		own, _ = procMem(b.env.bridgePID())
	case Native:
		own = up
	case IMAPC:
		own, _ = groupMem(b.env.imapcPGID)
	}
	return own, up
}

func openIdle(addr string, box *Mailbox) (*popConn, error) {
	c, err := dialPOP(addr)
	if err != nil {
		return nil, err
	}
	if err := c.login(box.User, box.Password); err != nil {
		c.Close()
		return nil, err
	}
	n, _, err := c.stat()
	if err == nil && n != len(box.Messages) {
		err = fmt.Errorf("STAT: %d messages, seeded %d", n, len(box.Messages))
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ScenarioNames returns the scenario names of cfg, in running order.
func ScenarioNames(cfg Config) []string {
	b := &runner{cfg: cfg, boxes: map[string]*Mailbox{}}
	var names []string
	for _, s := range b.scenarios() {
		names = append(names, s.name)
	}
	return names
}

// selectScenarios filters list by the names wanted (all when empty).
func selectScenarios(list []scenario, wanted []string) ([]scenario, error) {
	if len(wanted) == 0 {
		return list, nil
	}
	var out []scenario
	known := map[string]bool{}
	for _, s := range list {
		known[s.name] = true
		if slices.Contains(wanted, s.name) {
			out = append(out, s)
		}
	}
	var unknown []string
	for _, w := range wanted {
		if !known[w] {
			unknown = append(unknown, w)
		}
	}
	if len(unknown) > 0 {
		names := make([]string, 0, len(known))
		for n := range known {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, errors.New("unknown scenario " + strings.Join(unknown, ", ") + " (want " + strings.Join(names, ", ") + ")")
	}
	return out, nil
}
