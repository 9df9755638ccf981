package cluster

import (
	"testing"

	"github.com/popbridge/popbridge/internal/bridgetest"
)

// TestMain removes the popbridge binaries bridgetest builds.
func TestMain(m *testing.M) { bridgetest.Main(m) }
