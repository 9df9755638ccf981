package certs

import (
	"crypto/tls"
	"net"
	"testing"
)

// TestConfigsHandshake: the client configuration trusts the server's
// certificate, and only for the names it was made for.
func TestConfigsHandshake(t *testing.T) {
	server, client := Configs(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatalf("handshake with the trusted certificate: %v", err)
	}
	c.Close()
	other := client.Clone()
	other.ServerName = "imap.example.org"
	if c, err := tls.Dial("tcp", ln.Addr().String(), other); err == nil {
		c.Close()
		t.Fatal("a name the certificate was not made for was accepted")
	}
}

// TestFilesNames: a certificate made for a DNS name carries it, and not
// the loopback defaults.
func TestFilesNames(t *testing.T) {
	_, _, cert := Files(t, "", "upstream", "imap.other.example")
	if err := cert.VerifyHostname("imap.other.example"); err != nil {
		t.Fatal(err)
	}
	if cert.VerifyHostname("127.0.0.1") == nil || len(cert.IPAddresses) != 0 {
		t.Fatalf("certificate for imap.other.example also valid for %v", cert.IPAddresses)
	}
	_, _, def := Files(t, "", "server")
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		if def.VerifyHostname(ip.String()) != nil {
			t.Fatalf("default certificate not valid for %v", ip)
		}
	}
}
