// Package faultnet is a loopback TCP relay that injects network faults
// between a client and a server: latency, a bandwidth limit, stalls, black
// holes, a cut or a reset after N bytes, and writes sliced into single
// octets, separately for each direction and switchable while connections
// are open.
//
// Put a Relay in front of whatever should suffer: in front of the upstream
// IMAP server to hurt popbridge's upstream leg, or in front of popbridge's
// POP3 listener to hurt the client leg.
//
//	r, _ := faultnet.Listen("127.0.0.1:143")
//	defer r.Close()
//	r.Set(faultnet.ToClient, faultnet.Faults{Stall: true}) // the server goes silent
package faultnet

import (
	"fmt"
	"time"
)

// Direction is one of the two byte streams of a relayed connection.
type Direction int

const (
	// ToServer is what the client sends, on its way to the target.
	ToServer Direction = iota
	// ToClient is what the target sends back.
	ToClient
)

func (d Direction) String() string {
	switch d {
	case ToServer:
		return "to-server"
	case ToClient:
		return "to-client"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Faults is what a Relay does to one direction of every connection. The
// zero value forwards bytes unchanged.
type Faults struct {
	// Latency delays every chunk by this long after it arrived.
	Latency time.Duration
	// BytesPerSecond limits throughput; 0 means unlimited.
	BytesPerSecond int
	// Stall stops forwarding: bytes already read wait, and the sender
	// soon blocks on TCP flow control. Clearing it resumes the stream
	// where it stopped. A peer's close is not seen while stalled.
	Stall bool
	// BlackHole reads and discards everything: the sender never blocks,
	// the receiver never hears anything.
	BlackHole bool
	// CutAfter closes the whole connection (FIN both ways) once this many
	// octets have been forwarded in this direction since the connection
	// opened; the octets up to the limit are delivered. 0 means never. A
	// connection already past the limit when it is set is cut at its next
	// chunk.
	CutAfter int64
	// ResetAfter is CutAfter with a TCP RST (SO_LINGER 0) to both sides.
	ResetAfter int64
	// OneByteWrites forwards every octet in its own write, with Nagle off,
	// so the receiver sees one segment per octet.
	OneByteWrites bool
}

// limit returns the first of CutAfter and ResetAfter that applies, and
// whether it is a reset.
func (f Faults) limit() (n int64, reset bool) {
	switch {
	case f.ResetAfter > 0 && (f.CutAfter <= 0 || f.ResetAfter <= f.CutAfter):
		return f.ResetAfter, true
	case f.CutAfter > 0:
		return f.CutAfter, false
	}
	return 0, false
}

// AcceptMode is what a Relay does with a new connection.
type AcceptMode int

const (
	// AcceptForward connects to the target and relays.
	AcceptForward AcceptMode = iota
	// AcceptReset resets the connection at once, as a host with nothing
	// listening would (the client may see a reset or an EOF on its first
	// read: the TCP handshake itself completed in the kernel).
	AcceptReset
	// AcceptHang keeps the connection open and never connects to the
	// target: a server that accepts but never answers. What the client
	// sends is discarded; the connection ends when the client closes it.
	AcceptHang
)
