// Package reliability holds popbridge's fault-injection and load tests:
// the fault matrix (every fault we can produce on one machine, on the
// upstream leg and on the client leg, with what the POP3 client must see
// and what the upstream mailbox must look like afterwards), the circuit
// breaker under a real outage, and a short soak against Dovecot (the long
// one runs with POPBRIDGE_SOAK=5m, or from bench/soak).
//
// The tests build popbridge in-process with package bridge, with upstream
// deadlines of a fraction of a second, put a faultnet
// relay on either leg, and use imapscript for misbehaviour that Dovecot does
// not show on demand. docs/reliability.md is the matrix in prose.
package reliability
