package e2e

import (
	"testing"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
)

// TestMain removes the popbridge binary bridgeproc builds once for the
// whole test binary, with the race detector when the tests themselves run
// with -race, so races in the bridge show up under real clients too.
func TestMain(m *testing.M) { bridgeproc.Main(m) }
