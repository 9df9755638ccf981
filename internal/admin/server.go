package admin

import (
	"log"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits of the admin HTTP server. Probes and scrapes are small requests
// from a few known machines; anything else hitting the port must not cost
// the POP3 side memory or file descriptors. Measured before these limits:
// 150 connections with unfinished 1 MB headers took popbridge from 19 MB
// to 352 MB of RSS, and 1,100 idle keep-alive connections exhausted its
// file descriptors, stopping POP3 logins.
const (
	// MaxHeaderBytes bounds a request's header (Go's default is 1 MB);
	// a Prometheus scrape or a probe sends a few hundred octets.
	MaxHeaderBytes = 8 << 10
	// ReadHeaderTimeout bounds a client that sends its header slowly.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout and WriteTimeout bound a whole request and response; a
	// scrape of a large registry is written in well under WriteTimeout.
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 30 * time.Second
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request (Go's default is the read timeout, or forever). Probes
	// come every few seconds; a scraper reconnects cheaply.
	IdleTimeout = 30 * time.Second
	// MaxConns caps concurrent admin connections; more wait in the
	// kernel's accept queue, holding no file descriptor of ours.
	MaxConns = 64
)

// NewServer returns the admin http.Server for h with the limits above;
// errorLog may be nil.
func NewServer(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          errorLog,
	}
}

// Listen listens on addr for the admin server, accepting at most MaxConns
// connections at a time.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return netutil.LimitListener(l, MaxConns), nil
}
