package uidlimport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// fakePOP3 answers one connection from a script: for each command line
// received, the reply lines to send.
func fakePOP3(t *testing.T, script map[string]string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "+OK ready\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			reply, ok := script[strings.TrimRight(line, "\r\n")]
			if !ok {
				reply = "-ERR unknown\r\n"
			}
			io.WriteString(c, reply)
		}
	}()
	return &Server{Scheme: SchemeInsecure, Host: ln.Addr().String()}
}

func TestPOP3Client(t *testing.T) {
	long := strings.Repeat("x", 9000)
	s := fakePOP3(t, map[string]string{
		"USER alice":  "+OK\r\n",
		"PASS secret": "+OK\r\n",
		"UIDL":        "+OK\r\n1 abc\r\n2 d.e\r\n.\r\n",
		"LIST":        "+OK\r\n1 120\r\n2 5\r\n.\r\n",
		// A stuffed line, a line longer than the reader's buffer.
		"TOP 1 0": "+OK\r\nSubject: " + long + "\r\n..Dotted: yes\r\nMessage-ID: <1@x>\r\n\r\n.\r\n",
		"TOP 2 0": "-ERR no such message\r\n",
	})
	c, err := dialPOP3(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.login("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	uidls, err := c.uidls()
	if err != nil || uidls[1] != "abc" || uidls[2] != "d.e" {
		t.Fatalf("UIDL %v %v", uidls, err)
	}
	sizes, err := c.sizes()
	if err != nil || sizes[1] != 120 {
		t.Fatalf("LIST %v %v", sizes, err)
	}
	var got string
	err = c.top(1, 0, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		got = string(b)
		return err
	})
	if err != nil || !strings.Contains(got, "\r\n.Dotted: yes\r\n") || !strings.Contains(got, long) || !strings.HasSuffix(got, "<1@x>\r\n\r\n") {
		t.Fatalf("TOP: %v, %d octets", err, len(got))
	}
	if err := c.top(2, 0, func(io.Reader) error { return nil }); !errors.Is(err, errNegative) {
		t.Fatalf("TOP of a missing message: %v", err)
	}
}

func TestPOP3LoginRefused(t *testing.T) {
	s := fakePOP3(t, map[string]string{"USER alice": "+OK\r\n", "PASS secret": "-ERR [AUTH] secret is wrong\r\n"})
	c, err := dialPOP3(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	err = c.login("alice", "secret")
	if !errors.Is(err, errAuth) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("refused login: %v (the server's text, which echoes, must not show)", err)
	}
}

// A line longer than maxLine (a body part without line breaks) is cut to
// maxLine octets, and the lines after it arrive intact.
func TestPOP3LongLineBounded(t *testing.T) {
	huge := strings.Repeat("y", 3*maxLine)
	s := fakePOP3(t, map[string]string{
		"TOP 1 5": "+OK\r\nSubject: a\r\n\r\n" + huge + "\r\nafter\r\n.\r\n",
	})
	c, err := dialPOP3(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var got string
	err = c.top(1, 5, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		got = string(b)
		return err
	})
	want := "Subject: a\r\n\r\n" + huge[:maxLine] + "\r\nafter\r\n"
	if err != nil || got != want {
		t.Fatalf("TOP: %v, %d octets, want %d", err, len(got), len(want))
	}
}
