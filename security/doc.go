// Package security holds popbridge's black-box attack tests: each test
// builds and runs the real binary, talks to it over loopback sockets as a
// hostile client (or sits behind it as a hostile IMAP upstream), and
// checks the wire, the upstream and the logs. There is no non-test code;
// see docs/security.md for the threat model these tests prove.
package security
