package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/cache"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/telemetry"
	"github.com/popbridge/popbridge/policy"
	"github.com/popbridge/popbridge/pop3server"
	"github.com/popbridge/popbridge/upstream"
)

// TestDerivedValues: the values that tie pop3server and upstream together
// are derived here, from the one configuration: the POP3 login deadline
// from the upstream's, CAPA EXPIRE from the delete policy, the listing
// cache from --cache-entries; and the typed values pass through as they
// are.
func TestDerivedValues(t *testing.T) {
	for _, tc := range []struct {
		policy  policy.DeletePolicy
		entries int
		expire  string
	}{
		{policy.Honor, 10, "NEVER"},
		{policy.Leave, 0, "NEVER"},
		{policy.OnDownload, 3, "0"},
	} {
		cfg := config.Default()
		cfg.Upstream = &upstream.URL{Scheme: upstream.SchemeInsecure, Host: "127.0.0.1:1"}
		cfg.DeletePolicy = tc.policy
		cfg.CacheEntries = tc.entries
		cfg.UpstreamLoginTimeout = 7 * time.Second
		cfg.PlaintextAuth = pop3server.PlaintextNever
		cfg.ClientWorkarounds = pop3server.Workarounds{OENSEOH: true}
		b := &Bridge{cfg: *cfg}
		o := b.serverOptions()
		if o.LoginTimeout != 7*time.Second+loginSlack {
			t.Errorf("%v: POP3 login deadline %v, want the upstream's 7s + %v", tc.policy, o.LoginTimeout, loginSlack)
		}
		if o.Expire != tc.expire {
			t.Errorf("%v: EXPIRE %q, want %q", tc.policy, o.Expire, tc.expire)
		}
		if o.PlaintextAuth != pop3server.PlaintextNever || o.Workarounds != cfg.ClientWorkarounds {
			t.Errorf("%v: typed values changed on the way: %v %+v", tc.policy, o.PlaintextAuth, o.Workarounds)
		}
		b.metrics = telemetry.NewMetrics("test")
		c, err := b.newListingCache()
		if err != nil {
			t.Fatal(err)
		}
		if tc.entries == 0 {
			if c != nil {
				t.Errorf("--cache-entries 0 gave a cache")
			}
			continue
		}
		// The LRU holds --cache-entries listings and no more.
		for i := range tc.entries + 2 {
			c.Put(cache.Key{User: fmt.Sprint(i)}, &cache.Entry{})
		}
		if c.Len() != tc.entries {
			t.Errorf("listing cache holds %d, want --cache-entries %d", c.Len(), tc.entries)
		}
	}
}
