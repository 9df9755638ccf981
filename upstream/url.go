package upstream

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// URL schemes of --upstream.
const (
	SchemeIMAPS    = "imaps"         // implicit TLS, port 993
	SchemeIMAP     = "imap"          // STARTTLS, required and fail-closed, port 143
	SchemeInsecure = "imap+insecure" // no TLS at all (loopback and tests), port 143
)

// URL is a parsed upstream address.
type URL struct {
	// Scheme is SchemeIMAPS, SchemeIMAP or SchemeInsecure.
	Scheme string
	// Host is host:port, with the scheme's default port filled in.
	Host string
}

// String returns the canonical form, e.g. "imaps://mail.example.com:993".
func (u *URL) String() string { return u.Scheme + "://" + u.Host }

// hostname is Host without the port, for TLS server name verification.
func (u *URL) hostname() string {
	h, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return u.Host
	}
	return h
}

// ParseURL parses an --upstream value: imaps://host[:993],
// imap://host[:143] or imap+insecure://host[:143]. User info, paths,
// queries and fragments are refused: credentials come from the POP3 client
// and the mailbox from --mailbox.
func ParseURL(s string) (*URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("upstream URL %q: %w", s, err)
	}
	var port string
	switch strings.ToLower(u.Scheme) {
	case SchemeIMAPS:
		port = "993"
	case SchemeIMAP, SchemeInsecure:
		port = "143"
	case "":
		return nil, fmt.Errorf("upstream URL %q has no scheme (want imaps://, imap:// or imap+insecure://)", s)
	default:
		return nil, fmt.Errorf("upstream URL %q: unknown scheme %q (want imaps, imap or imap+insecure)", s, u.Scheme)
	}
	switch {
	case u.Opaque != "":
		return nil, fmt.Errorf("upstream URL %q: want scheme://host[:port]", s)
	case u.User != nil:
		return nil, fmt.Errorf("upstream URL %q: user info is not allowed (credentials come from the POP3 client)", s)
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("upstream URL %q: a path is not allowed (use --mailbox)", s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("upstream URL %q: a query is not allowed", s)
	case u.Fragment != "":
		return nil, fmt.Errorf("upstream URL %q: a fragment is not allowed", s)
	case u.Hostname() == "":
		return nil, fmt.Errorf("upstream URL %q has no host", s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("upstream URL %q: bad port %q", s, p)
		}
		port = strconv.Itoa(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Errorf("upstream URL %q: empty port", s)
	}
	return &URL{Scheme: strings.ToLower(u.Scheme), Host: net.JoinHostPort(u.Hostname(), port)}, nil
}
