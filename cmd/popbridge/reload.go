package main

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/popbridge/popbridge/internal/config"
)

// reloadConfig is SIGHUP's configuration part: the configuration is loaded
// again from the same flags, environment and file, and its policies and
// per-domain and per-user overrides apply to logins from now on. Sessions
// in progress keep what they logged in with; listeners, limits and the
// other settings need a restart. A configuration that does not load
// leaves the running one in place, with one error line in the log.
func (b *bridge) reloadConfig(running *config.Config, args []string, getenv func(string) string, log zerolog.Logger) {
	if running.ConfigFile == "" || b.backend == nil {
		return
	}
	cfg, err := config.Load(args, getenv)
	now := time.Now()
	if err != nil {
		b.metrics.ConfigLoaded(now, false)
		log.Error().Str("error", oneLine(err.Error())).Msg("configuration reload failed; keeping the running configuration")
		return
	}
	if running.Demo {
		cfg.Upstream = running.Upstream // the demo server's, set at start
	}
	b.backend.Reload(cfg.Resolver())
	b.metrics.ConfigLoaded(now, true)
	log.Info().Str("config", cfg.ConfigFile).Msg("configuration reloaded: policies and overrides apply to new sessions")
}
