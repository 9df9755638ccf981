// Package e2e holds popbridge's end-to-end tests: the real popbridge binary,
// built from ./cmd/popbridge once per test run, in front of a real Dovecot
// (internal/testing/testenv), driven by real POP3 clients (curl, fetchmail, mpop,
// getmail6, Python's poplib) and by a raw POP3 client for the safety rules of
// docs/policy.md.
//
// Every delivered message is compared byte for byte (SHA-256) with the
// upstream BODY[] as Dovecot serves it. Where a client changes what it
// delivers (a header it prepends, CRLF turned into LF), the test undoes
// exactly that documented change and nothing else; see each client's test.
//
// Apart from this file the package is tests only. Run it with
// go test ./e2e; ./scripts/test.sh installs the external tools, and with
// CI=true a missing tool fails the test instead of skipping it.
package e2e
