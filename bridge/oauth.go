package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/popbridge/popbridge/oauth"
	"github.com/popbridge/popbridge/upstream"
)

// authenticator assembles the OAuth2 upstream login (docs/oauth2.md) when
// any user's auth resolves to oauth2-user or oauth2-app; for pass-through
// only it returns nil and opens nothing. The key file, the providers and
// the store are checked here, at start, so that a mistake stops the
// bridge instead of answering [SYS/PERM] at the first login.
func (b *Bridge) authenticator() (upstream.Authenticator, error) {
	cfg := &b.cfg
	if !cfg.UsesOAuth() {
		return nil, nil
	}
	key, err := oauth.LoadKeyFile(cfg.SecretKeyFile)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("%s: %w", cfg.Where("secret-key-file"), err)}
	}
	providers, err := oauth.ProvidersFromConfig(cfg)
	if err != nil {
		return nil, &ConfigError{err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.Store == "none" {
		return nil, &ConfigError{fmt.Errorf("%s: none, but auth oauth2-user and oauth2-app keep their grants in the state store", cfg.Where("store"))}
	}
	st := b.sharedStore()
	if err := st.Open(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("store"), err)
	}
	state := oauth.FromStore(st)
	m := oauth.NewManager(oauth.ManagerOptions{
		Store:     state,
		Key:       key,
		Providers: providers,
		Logger:    b.log.With().Str("component", "oauth").Logger(),
		Metrics:   oauth.NewMetrics(b.metrics.Registry(), state),
	})
	return oauth.NewAuthenticator(m, oauth.NewVerifier(oauth.VerifierOptions{}), cfg.Resolver()), nil
}
