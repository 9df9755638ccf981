package upstream

import (
	"context"
	"errors"
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

// dialGuarded is dial behind the breaker of cfg's upstream.
func (b *Backend) dialGuarded(ctx context.Context, cfg dialConfig) (*link, error) {
	opts := b.opts.Breaker.withDefaults()
	if opts.Threshold < 0 {
		return dial(ctx, cfg)
	}
	br := b.breakers.get(cfg.url.String(), opts, b.opts.Logger)
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
		if br.open {
			return
		}
		br.failures++
		if br.failures >= br.opts.Threshold {
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
	br.open, br.probing, br.failures = false, false, 0
	br.cooldown = br.opts.Cooldown
}

// state is for tests and logs: "closed", "open" or "half-open".
func (br *breaker) state() string {
	br.mu.Lock()
	defer br.mu.Unlock()
	switch {
	case !br.open:
		return "closed"
	case br.probing || !br.now().Before(br.openUntil):
		return "half-open"
	}
	return "open"
}
