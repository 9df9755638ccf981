package testenv

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback "host:port" where every connection is
// refused for as long as the test runs, for tests of an unreachable
// upstream. A TCP socket is bound there and never listens: the kernel
// answers connections with a reset, and, having no SO_REUSEADDR, the socket
// keeps any other server (or outgoing connection) of a parallel test off
// the port. A listener closed at once would leave the port to anyone, and
// the test would meet a stranger instead of a refusal.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testenv: refused address: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("testenv: refused address: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("testenv: refused address: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// FreePort returns "host:port" with a port of host ("127.0.0.1", "::1")
// that was free a moment ago, for a server that cannot listen on port 0
// and report its port (HAProxy): below the ephemeral range, so that no
// outgoing connection takes it meanwhile. The caller still retries with
// another port when its server fails to bind.
func FreePort(t testing.TB, host string) string {
	t.Helper()
	ports, err := freePortsOn(host, 1)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return net.JoinHostPort(host, strconv.Itoa(ports[0]))
}
