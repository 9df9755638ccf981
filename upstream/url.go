package upstream

import (
	"fmt"
	"net"
	"net/netip"
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

// String returns the canonical form, e.g. "imaps://mail.example.com:993"
// ("" for nil). A URL holds no credentials (ParseURL refuses them), so it
// can be printed anywhere.
func (u *URL) String() string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

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
// and the mailbox from --mailbox. The result is canonical (scheme and host
// lower case, the default port filled in), so that equal upstreams give
// equal cache keys. Errors quote the input with any user info replaced by
// REDACTED: a password pasted into the URL never reaches a log.
func ParseURL(s string) (*URL, error) {
	u, err := url.Parse(s)
	q := Redact(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q", q)
	}
	var port string
	switch strings.ToLower(u.Scheme) {
	case SchemeIMAPS:
		port = "993"
	case SchemeIMAP, SchemeInsecure:
		port = "143"
	case "":
		return nil, fmt.Errorf("URL %q has no scheme (want imaps://, imap:// or imap+insecure://)", q)
	default:
		return nil, fmt.Errorf("URL %q: unknown scheme %q (want imaps, imap or imap+insecure)", q, u.Scheme)
	}
	switch {
	case u.Opaque != "":
		return nil, fmt.Errorf("URL %q: want scheme://host[:port]", q)
	case u.User != nil:
		return nil, fmt.Errorf("URL %q must not contain credentials (each POP3 login brings its own)", q)
	case u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("URL %q: a path is not allowed (the mailbox is --mailbox)", q)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("URL %q: a query is not allowed", q)
	case u.Fragment != "":
		return nil, fmt.Errorf("URL %q: a fragment is not allowed", q)
	case u.Hostname() == "":
		return nil, fmt.Errorf("URL %q has no host", q)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("URL %q: invalid port %q", q, p)
		}
		port = strconv.Itoa(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Errorf("URL %q: empty port", q)
	}
	return &URL{Scheme: strings.ToLower(u.Scheme), Host: net.JoinHostPort(strings.ToLower(u.Hostname()), port)}, nil
}

// Redact hides the user info of a URL-like string ("imap://REDACTED@h"),
// for quoting input that may carry a password.
func Redact(raw string) string {
	at := strings.LastIndexByte(raw, '@')
	sep := strings.Index(raw, "://")
	if at < 0 || sep < 0 || sep > at {
		return raw
	}
	return raw[:sep+3] + "REDACTED" + raw[at:]
}

// Loopback reports whether the host is localhost or a loopback address,
// where a plaintext upstream sends no password over a network.
func (u *URL) Loopback() bool {
	host := u.hostname()
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
