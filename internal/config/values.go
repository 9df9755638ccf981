package config

import (
	"github.com/popbridge/popbridge/store"

	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Upstream URL schemes and their default ports.
var upstreamPorts = map[string]string{
	"imaps":         "993",
	"imap":          "143",
	"imap+insecure": "143",
}

// ParseUpstream validates an upstream URL and returns it in canonical form,
// scheme://host:port with the default port filled in and the scheme and
// host lower-cased, so that equal upstreams give equal cache keys.
func ParseUpstream(raw string) (string, error) {
	u, err := url.Parse(raw)
	raw = redact(raw) // errors below quote it
	if err != nil {
		return "", fmt.Errorf("invalid URL %q", raw)
	}
	scheme := strings.ToLower(u.Scheme)
	defPort, ok := upstreamPorts[scheme]
	switch {
	case !ok:
		return "", fmt.Errorf("URL %q: unknown scheme %q (want imaps, imap or imap+insecure)", raw, u.Scheme)
	case u.Opaque != "":
		return "", fmt.Errorf("URL %q: want %s://host[:port]", raw, scheme)
	case u.User != nil:
		// The bridge logs in with each POP3 user's own credentials.
		return "", fmt.Errorf("URL %q must not contain credentials", raw)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", fmt.Errorf("URL %q: want %s://host[:port] without path or query (the mailbox is --mailbox)", raw, scheme)
	case u.Hostname() == "":
		return "", fmt.Errorf("URL %q has no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = defPort
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("URL %q: invalid port %q", raw, port)
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// redact hides a userinfo part, so that a password pasted into the URL by
// mistake does not end up in an error message or a log.
func redact(raw string) string {
	at := strings.LastIndexByte(raw, '@')
	sep := strings.Index(raw, "://")
	if at < 0 || sep < 0 || sep > at {
		return raw
	}
	return raw[:sep+3] + "REDACTED" + raw[at:]
}

// upstreamInsecure reports whether a canonical upstream URL is plaintext
// to a host that is not a loopback address.
func upstreamInsecure(canonical string) bool {
	rest, ok := strings.CutPrefix(canonical, "imap+insecure://")
	if !ok {
		return false
	}
	host, _, _ := net.SplitHostPort(rest)
	if host == "localhost" {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// checkAddr accepts "" (disabled) or host:port; port 0 picks a free port.
func checkAddr(v string) error {
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port)", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid address %q: bad port %q", v, port)
	}
	return nil
}

// checkMailbox rejects names no IMAP command could carry safely.
func checkMailbox(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("mailbox name is empty")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("mailbox name %q contains a control character", v)
	}
	return nil
}

// checkStoreURL accepts the store URLs of store.Open (without showing a
// password in its error); the rest (a file that cannot be opened, a
// database that is down) shows when the store is opened.
func checkStoreURL(v string) error { return store.CheckURL(v, "") }

// checkDeviceSeparator: a separator must not be something a login name
// needs ('@', '.') nor whitespace or a control character.
func checkDeviceSeparator(v string) error {
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '@' || r == '.' }) {
		return fmt.Errorf("device separator %q: no '@', '.', spaces or control characters", v)
	}
	return nil
}

// checkUIDLFormat is only the syntax-free part: UIDLs are 0x21..0x7E, so
// the format must be too. upstream.ValidateUIDLFormat does the rest.
func checkUIDLFormat(v string) error {
	if v == "" {
		return fmt.Errorf("uidl format is empty")
	}
	for _, r := range v {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("uidl format %q: only printable ASCII without spaces is allowed", v)
		}
	}
	return nil
}

// splitList splits a comma-separated value, dropping empty items so that
// a trailing comma in a variable is harmless.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func setWorkarounds(c *Config, v string) error {
	var out []string
	for _, w := range splitList(v) {
		switch w {
		case WorkaroundOutlookNoNULs, WorkaroundOENSEOH:
		default:
			return fmt.Errorf("unknown client workaround %q (want %s or %s)", w, WorkaroundOutlookNoNULs, WorkaroundOENSEOH)
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	c.ClientWorkarounds = out
	return nil
}

func setProxyProtocol(c *Config, v string) error {
	var out []netip.Prefix
	for _, item := range splitList(v) {
		p, err := parsePrefix(item)
		if err != nil {
			return err
		}
		out = append(out, p)
	}
	c.ProxyProtocol = out
	return nil
}

// parsePrefix accepts a CIDR or a single address (as a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q (want a CIDR like 10.0.0.0/8 or an address)", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid network %q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q (want a CIDR like 10.0.0.0/8 or an address)", s)
	}
	return p.Masked(), nil
}
