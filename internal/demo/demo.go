// Package demo runs the embedded IMAP server behind `popbridge --demo`: an
// in-memory go-imap server on a loopback port with user demo/demo and a few
// sample messages, so the bridge can be tried without any upstream.
package demo

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Username and Password of the demo account.
const (
	Username = "demo"
	Password = "demo"
)

// Server is a running demo IMAP server.
type Server struct {
	// Addr is the loopback host:port it listens on.
	Addr string

	srv  *imapserver.Server
	done chan error
}

// Start listens on addr (use "127.0.0.1:0" for any free port) and serves
// the demo account.
func Start(addr string) (*Server, error) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(Username, Password)
	if err := user.Create("INBOX", nil); err != nil {
		return nil, fmt.Errorf("demo: creating INBOX: %w", err)
	}
	for i, msg := range Messages() {
		_, err := user.Append("INBOX", literal{bytes.NewReader(msg)}, &imap.AppendOptions{
			Time: time.Date(2026, 11, 2+i, 9, 30, 0, 0, time.UTC),
		})
		if err != nil {
			return nil, fmt.Errorf("demo: seeding message %d: %w", i+1, err)
		}
	}
	mem.AddUser(user)

	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
		},
		// Loopback only: the demo upstream is never reachable from elsewhere.
		InsecureAuth: true,
		Logger:       discardLogger{},
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: listening: %w", err)
	}
	if tcp, ok := l.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		l.Close()
		return nil, fmt.Errorf("demo: %s is not a loopback address", addr)
	}
	s := &Server{Addr: l.Addr().String(), srv: srv, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(l) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// Messages are the demo mailbox's contents, CRLF line ends (imapmemserver
// re-serializes BODY[], so only canonical CRLF messages round-trip exactly).
func Messages() [][]byte {
	msgs := []string{
		`From: popbridge <hello@popbridge.example>
To: demo@popbridge.example
Subject: Welcome to popbridge
Date: Mon, 02 Nov 2026 09:30:00 +0000
Message-ID: <welcome@popbridge.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hello!

This message lives on an IMAP server; you are reading it over POP3.
Try RETR, TOP 1 0, UIDL and DELE, then QUIT.
..and this line starts with a dot, which POP3 dot-stuffs on the wire.
`,
		`From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>
To: demo@popbridge.example
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=
Date: Tue, 03 Nov 2026 09:30:00 +0100
Message-ID: <koeln@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße aus Köln! Das Wetter ist schön, der Dom steht noch.
`,
		`From: Scanner <scanner@office.example>
To: demo@popbridge.example
Subject: Scanned document
Date: Wed, 04 Nov 2026 09:30:00 +0000
Message-ID: <scan-0001@office.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

Your scan is attached.
--b1
Content-Type: application/pdf; name="scan.pdf"
Content-Disposition: attachment; filename="scan.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2cvUGFnZXMgMiAwIFI+PgplbmRv
YmoKMiAwIG9iago8PC9UeXBlL1BhZ2VzL0tpZHNbXS9Db3VudCAwPj4KZW5kb2JqCnRyYWlsZXIK
PDwvUm9vdCAxIDAgUj4+CiUlRU9GCg==
--b1--
`,
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = []byte(strings.ReplaceAll(m, "\n", "\r\n"))
	}
	return out
}
