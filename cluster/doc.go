// Package cluster proves popbridge's scale-out on loopback
// (docs/operations.md, "Several replicas"): several popbridge processes
// share one PostgreSQL store behind HAProxy with PROXY protocol v2, run
// from the shipped deploy/haproxy/haproxy.cfg.
//
// The tests start real parts only: Dovecot, a private PostgreSQL cluster,
// popbridge binaries and HAProxy. They check that --lock-session holds
// across replicas and is freed when its holder is killed, and that a load
// of POP3 clients through HAProxy loses nothing while a replica is killed,
// another drained and restarted, and PostgreSQL restarted.
package cluster
