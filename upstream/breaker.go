package upstream

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Breaker defaults (see BreakerOptions).
const (
	DefaultBreakerThreshold   = 5
	DefaultBreakerCooldown    = time.Second
	DefaultBreakerMaxCooldown = 10 * time.Second
)

// BreakerOptions tunes the circuit breaker that makes logins fail fast
// while an upstream is unreachable, instead of every POP3 client waiting
// out the dial and login timeouts. There is one breaker per upstream URL.
//
// Only connecting counts: TCP connect, TLS, greeting, STARTTLS, CAPABILITY
// and ID. A refused password or a failing SELECT says the server is up.
type BreakerOptions struct {
	// Threshold is how many connection attempts in a row must fail before
	// the breaker opens. Default 5; negative disables the breaker.
	Threshold int
	// Cooldown is how long the breaker stays open before it lets one
	// probe connection through; each failed probe doubles it, up to
	// MaxCooldown. A probe that connects closes the breaker. Defaults 1 s
	// and 10 s.
	Cooldown, MaxCooldown time.Duration
}

func (o BreakerOptions) withDefaults() BreakerOptions {
	if o.Threshold == 0 {
		o.Threshold = DefaultBreakerThreshold
	}
	if o.Cooldown <= 0 {
		o.Cooldown = DefaultBreakerCooldown
	}
	if o.MaxCooldown <= 0 {
		o.MaxCooldown = DefaultBreakerMaxCooldown
	}
	o.MaxCooldown = max(o.MaxCooldown, o.Cooldown)
	return o
}

// errBreakerOpen fails a login at once while the upstream is known to be
// unreachable; Login answers it with [SYS/TEMP] like any connect failure.
var errBreakerOpen = errors.New("upstream unreachable, not trying (circuit breaker open)")

// dialGuarded is dial behind the breaker of cfg's upstream. A disabled
// breaker (negative Threshold) still counts failures for Health; it only
// never opens.
func (b *Backend) dialGuarded(ctx context.Context, cfg dialConfig) (*link, error) {
	br := b.breaker(cfg.url)
	report, err := br.allow()
	if err != nil {
		return nil, err
	}
	l, err := dial(ctx, cfg)
	switch {
	case err == nil:
		report(outcomeSuccess)
	case errors.Is(ctx.Err(), context.Canceled):
		// The POP3 side gave up (shutdown): nothing learnt about the
		// upstream. A deadline, ours or the server's, does count.
		report(outcomeUnknown)
	default:
		report(outcomeFailure)
	}
	return l, err
}

// breaker is the breaker of upstream u.
func (b *Backend) breaker(u *URL) *breaker {
	return b.breakers.get(u.String(), b.opts.Breaker.withDefaults(), b.opts.Logger)
}

// Health is what the circuit breaker knows of the server-wide upstream
// (Options.URL), for readiness checks.
type Health struct {
	// ConnectFailures is how many logins in a row could not connect to
	// it, those failed fast by the open breaker included; 0 after any
	// connection that got through (or a successful Probe).
	ConnectFailures int
	// Open is true while the breaker fails logins fast.
	Open bool
}

// Health reports the server-wide upstream's health; the zero Health
// (healthy) without Options.URL.
func (b *Backend) Health() Health {
	if b.opts.URL == nil {
		return Health{}
	}
	return b.breaker(b.opts.URL).health()
}

// Probe tries a TCP connection to the server-wide upstream, outside any
// session. On success the upstream counts as reachable again: the failure
// count restarts and the breaker closes, so logins go through (TLS or
// login trouble then shows up again in them). A replica that is unready
// because of the upstream gets no clients, so without a probe no login
// would ever find the upstream back.
func (b *Backend) Probe(ctx context.Context) error {
	if b.opts.URL == nil {
		return errors.New("upstream: no server-wide upstream to probe")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", b.opts.URL.Host)
	if err != nil {
		return err
	}
	c.Close()
	b.breaker(b.opts.URL).reachable()
	return nil
}

// breakerSet holds one breaker per upstream; its zero value is ready.
type breakerSet struct {
	mu sync.Mutex
	m  map[string]*breaker
}

func (s *breakerSet) get(key string, opts BreakerOptions, log zerolog.Logger) *breaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*breaker)
	}
	br := s.m[key]
	if br == nil {
		br = newBreaker(opts, time.Now)
		br.log = log.With().Str("upstream", key).Logger()
		s.m[key] = br
	}
	return br
}

type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeFailure
	outcomeUnknown
)

// breaker is the classic three-state circuit breaker: closed (attempts go
// through, consecutive failures are counted), open (attempts fail at once
// until the cooldown ends), half-open (one probe goes through; the others
// still fail fast until it reports).
type breaker struct {
	opts BreakerOptions
	now  func() time.Time
	log  zerolog.Logger

	mu        sync.Mutex
	failures  int       // consecutive, while closed
	streak    int       // consecutive failed attempts, failed fast included
	open      bool      // open or half-open
	openUntil time.Time // end of the cooldown
	cooldown  time.Duration
	probing   bool // a half-open probe is in flight
}

func newBreaker(opts BreakerOptions, now func() time.Time) *breaker {
	return &breaker{opts: opts, now: now, cooldown: opts.Cooldown, log: zerolog.Nop()}
}

// allow says whether an attempt may go ahead; if so, report must be called
// once with its outcome.
func (br *breaker) allow() (report func(outcome), err error) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if !br.open {
		return br.reportClosed, nil
	}
	if br.probing || br.now().Before(br.openUntil) {
		br.streak++
		return nil, errBreakerOpen
	}
	br.probing = true
	return br.reportProbe, nil
}

// reportClosed records an attempt allowed while closed. Attempts still in
// flight when the breaker opened report here too: a success proves the
// upstream reachable and closes it; a failure changes nothing more.
func (br *breaker) reportClosed(o outcome) {
	br.mu.Lock()
	defer br.mu.Unlock()
	switch o {
	case outcomeSuccess:
		br.closeLocked()
	case outcomeFailure:
		br.streak++
		if br.open {
			return
		}
		br.failures++
		if br.opts.Threshold > 0 && br.failures >= br.opts.Threshold {
			br.open = true
			br.cooldown = br.opts.Cooldown
			br.openUntil = br.now().Add(br.cooldown)
			br.log.Warn().Int("failures", br.failures).Dur("retry_in", br.cooldown).
				Msg("upstream unreachable: failing logins fast")
		}
	}
}

func (br *breaker) reportProbe(o outcome) {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.probing = false
	if o == outcomeFailure {
		br.streak++
	}
	if !br.open {
		return // an attempt from before the breaker opened closed it
	}
	switch o {
	case outcomeSuccess:
		br.closeLocked()
	case outcomeFailure:
		br.cooldown = min(2*br.cooldown, br.opts.MaxCooldown)
		br.openUntil = br.now().Add(br.cooldown)
		br.log.Debug().Dur("retry_in", br.cooldown).Msg("upstream still unreachable")
	}
}

func (br *breaker) closeLocked() {
	if br.open {
		br.log.Info().Msg("upstream reachable again")
	}
	br.open, br.probing, br.failures, br.streak = false, false, 0, 0
	br.cooldown = br.opts.Cooldown
}

// reachable is a successful probe from outside any session.
func (br *breaker) reachable() {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.closeLocked()
}

func (br *breaker) health() Health {
	br.mu.Lock()
	defer br.mu.Unlock()
	return Health{ConnectFailures: br.streak, Open: br.open}
}
