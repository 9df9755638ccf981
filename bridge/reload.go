package bridge

import (
	"time"

	"github.com/popbridge/popbridge/internal/config"
)

// Reload is SIGHUP's configuration part: load gives the configuration
// again (from the same flags, environment and file), and its policies and
// per-domain and per-user overrides apply to logins from now on. Sessions
// in progress keep what they logged in with; listeners, limits and the
// other settings need a restart. When load fails its error is returned
// and the running configuration stays. Either way the
// popbridge_config_last_load_* metrics tell.
func (b *Bridge) Reload(load func() (*config.Config, error)) error {
	cfg, err := load()
	if err != nil {
		b.metrics.ConfigLoaded(time.Now(), false)
		return err
	}
	if b.cfg.Demo {
		cfg.Upstream = b.cfg.Upstream // the demo server's, set at start
	}
	b.backend.Reload(cfg.Resolver())
	b.metrics.ConfigLoaded(time.Now(), true)
	return nil
}
