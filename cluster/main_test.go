package cluster

import (
	"testing"

	"github.com/popbridge/popbridge/internal/testing/bridgeproc"
)

// TestMain removes the popbridge binaries bridgeproc builds.
func TestMain(m *testing.M) { bridgeproc.Main(m) }
