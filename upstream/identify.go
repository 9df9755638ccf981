package upstream

import (
	"context"
	"errors"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Identity is what the upstream says it is before login: its greeting and
// the name in its RFC 2971 ID response, when it offers ID.
type Identity struct {
	Greeting string
	Name     string // ID "name", "" without ID
}

// IsDovecot reports whether the server identifies itself as Dovecot (in
// its ID, or in the greeting Dovecot sends by default).
func (id Identity) IsDovecot() bool {
	return strings.EqualFold(id.Name, "Dovecot") || strings.Contains(strings.ToLower(id.Greeting), "dovecot")
}

// Identify connects to the server-wide upstream (Options.URL) as a login
// would, reads its greeting and asks its ID (sending none of ours), then
// logs out. It sends no credentials.
func (b *Backend) Identify(ctx context.Context) (Identity, error) {
	if b.opts.URL == nil {
		return Identity{}, errors.New("no server-wide upstream")
	}
	ctx, cancel := withTimeout(ctx, b.opts.LoginTimeout, errLoginTimeout)
	defer cancel()
	l, err := dial(ctx, dialConfig{url: b.opts.URL, tls: b.opts.TLSConfig,
		dialTimeout: b.opts.DialTimeout, commandTimeout: b.opts.CommandTimeout})
	if err != nil {
		return Identity{}, err
	}
	defer l.client.Close()
	id := Identity{Greeting: l.greeting}
	if l.caps.Has(imap.CapID) {
		if data, err := l.client.ID(nil).Wait(); err == nil && data != nil {
			id.Name = data.Name
		}
	}
	l.client.Logout().Wait()
	return id, nil
}

// WarnIfDovecotWithoutSendID logs a warning when the upstream is Dovecot
// and SendID is off: every failed login through popbridge then counts
// against popbridge's own address in Dovecot's auth penalty, which delays
// every user. The cure is --upstream-send-id with popbridge's address in
// Dovecot's login_trusted_networks. Meant to run once at startup, in its
// own goroutine; an unreachable upstream is only logged at debug level.
func (b *Backend) WarnIfDovecotWithoutSendID(ctx context.Context) {
	if b.opts.SendID || b.opts.URL == nil {
		return
	}
	id, err := b.Identify(ctx)
	if err != nil {
		b.opts.Logger.Debug().Err(err).Msg("identifying the upstream")
		return
	}
	if id.IsDovecot() {
		b.opts.Logger.Warn().Str("upstream", b.opts.URL.String()).Msg("the upstream is Dovecot and --upstream-send-id is off: " +
			"Dovecot applies its auth penalty to popbridge's own address, so one client's wrong passwords delay every user's login. " +
			"Set --upstream-send-id and add popbridge's address to Dovecot's login_trusted_networks (docs/security.md)")
	}
}
