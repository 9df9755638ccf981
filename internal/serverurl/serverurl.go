// Package serverurl parses the scheme://host[:port] addresses of the
// servers popbridge talks to (the IMAP --upstream, the old POP3 server of
// "popbridge uidl import --from"): one set of rules and one way of quoting
// the input in errors, with any user info replaced by REDACTED so that a
// password pasted into a URL never reaches a log or a terminal.
package serverurl

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Parse parses raw as scheme://host[:port] with a scheme of defaultPorts
// (lower case; its value is the scheme's port). User info, paths, queries
// and fragments are refused: why is each caller's reason (credentials come
// from elsewhere; a path means nothing). It returns the scheme and the
// host:port, both lower case and with the default port filled in, so
// equal servers compare equal.
func Parse(raw string, defaultPorts map[string]string, wantSchemes string) (scheme, hostport string, err error) {
	q := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the raw input: not wrapped.
		return "", "", fmt.Errorf("invalid URL %q", q)
	}
	scheme = strings.ToLower(u.Scheme)
	port, ok := defaultPorts[scheme]
	switch {
	case scheme == "":
		return "", "", fmt.Errorf("URL %q has no scheme (want %s)", q, wantSchemes)
	case !ok:
		return "", "", fmt.Errorf("URL %q: unknown scheme %q (want %s)", q, u.Scheme, wantSchemes)
	case u.Opaque != "":
		return "", "", fmt.Errorf("URL %q: want scheme://host[:port]", q)
	case u.User != nil:
		return "", "", fmt.Errorf("URL %q must not contain credentials", q)
	case u.Path != "" && u.Path != "/":
		return "", "", fmt.Errorf("URL %q: a path is not allowed", q)
	case u.RawQuery != "" || u.ForceQuery:
		return "", "", fmt.Errorf("URL %q: a query is not allowed", q)
	case u.Fragment != "":
		return "", "", fmt.Errorf("URL %q: a fragment is not allowed", q)
	case u.Hostname() == "":
		return "", "", fmt.Errorf("URL %q has no host", q)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("URL %q: invalid port %q", q, p)
		}
		port = strconv.Itoa(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return "", "", fmt.Errorf("URL %q: empty port", q)
	}
	return scheme, net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
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
