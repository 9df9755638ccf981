package upstream

import (
	"net"
	"net/netip"

	"github.com/popbridge/popbridge/internal/serverurl"
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
	scheme, host, err := serverurl.Parse(s, upstreamPorts, "imaps://, imap:// or imap+insecure://")
	if err != nil {
		return nil, err
	}
	return &URL{Scheme: scheme, Host: host}, nil
}

// upstreamPorts are the schemes of --upstream and their default ports.
var upstreamPorts = map[string]string{SchemeIMAPS: "993", SchemeIMAP: "143", SchemeInsecure: "143"}

// Redact hides the user info of a URL-like string ("imap://REDACTED@h"),
// for quoting input that may carry a password.
func Redact(raw string) string { return serverurl.Redact(raw) }

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
