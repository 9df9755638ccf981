package main

import (
	"net"

	"github.com/popbridge/popbridge/internal/config"
)

// wrapProxyProtocol accepts PROXY protocol headers from --proxy-protocol
// networks. Until the operations work lands it is the identity.
func wrapProxyProtocol(cfg *config.Config, l net.Listener) net.Listener {
	return l
}
