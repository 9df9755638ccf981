package e2e

import (
	"testing"

	"github.com/popbridge/popbridge/internal/bridgetest"
)

// TestMain removes the popbridge binary bridgetest builds once for the
// whole test binary, with the race detector when the tests themselves run
// with -race, so races in the bridge show up under real clients too.
func TestMain(m *testing.M) { bridgetest.Main(m) }
