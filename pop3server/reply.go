package pop3server

import (
	"bufio"
	"bytes"
	"io"
)

// dotWriter writes a multi-line response body: it dot-stuffs lines starting
// with ".", turns bare LF into CRLF, and Close ends the body with CRLF (if
// missing) and the terminating ".". Un-stuffing its output gives the input
// with CRLF line ends (plus a final CRLF when the input lacked one).
type dotWriter struct {
	w           *bufio.Writer
	workarounds Workarounds

	bol      bool // at the beginning of a line
	prevCR   bool // the last octet written was a CR
	inHeader bool // no empty line seen yet (for OENSEOH)
	lineLen  int  // octets in the current line so far (for OENSEOH)
}

func newDotWriter(w *bufio.Writer, wa Workarounds) *dotWriter {
	return &dotWriter{w: w, workarounds: wa, bol: true, inHeader: true}
}

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && d.lineByLine() {
		var err error
		if p, err = d.writeLine(p); err != nil {
			return 0, err
		}
	}
	for len(p) > 0 {
		var err error
		if p, err = d.writeRun(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// lineByLine reports whether the octets must go line by line: while a
// workaround needs to see each line (the header for OENSEOH) or octet
// (OutlookNoNULs). Otherwise writeRun passes whole runs of lines.
func (d *dotWriter) lineByLine() bool {
	return d.workarounds.OutlookNoNULs || (d.workarounds.OENSEOH && d.inHeader)
}

// writeRun writes the longest run at the start of p that goes out
// unchanged, complete CRLF lines not followed by a line starting with a
// dot, in one buffered Write (a line at a time cost a third of the CPU of
// a large download), then the change that ended the run: the stuffing
// dot, or the CR of a bare LF. It returns the rest of p.
func (d *dotWriter) writeRun(p []byte) ([]byte, error) {
	if d.bol && p[0] == '.' {
		if err := d.w.WriteByte('.'); err != nil {
			return nil, err
		}
	}
	end := 0 // p[:end] goes out as is
	for {
		i := bytes.IndexByte(p[end:], '\n')
		if i < 0 {
			if _, err := d.w.Write(p); err != nil {
				return nil, err
			}
			d.bol, d.prevCR = false, p[len(p)-1] == '\r'
			return nil, nil
		}
		lf := end + i
		if !(lf > 0 && p[lf-1] == '\r') && !(lf == 0 && d.prevCR) {
			// A bare LF: the line goes out with CRLF.
			if _, err := d.w.Write(p[:lf]); err != nil {
				return nil, err
			}
			if _, err := d.w.WriteString("\r\n"); err != nil {
				return nil, err
			}
			d.bol, d.prevCR = true, false
			return p[lf+1:], nil
		}
		end = lf + 1
		if end == len(p) || p[end] == '.' {
			if _, err := d.w.Write(p[:end]); err != nil {
				return nil, err
			}
			d.bol, d.prevCR = true, false
			return p[end:], nil
		}
	}
}

// writeLine writes the first line of p (or all of p when it holds no
// LF), tracking the header for the workarounds, and returns the rest.
func (d *dotWriter) writeLine(p []byte) ([]byte, error) {
	if d.bol && p[0] == '.' {
		if err := d.w.WriteByte('.'); err != nil {
			return nil, err
		}
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if err := d.writeRaw(p); err != nil {
			return nil, err
		}
		d.bol = false
		d.lineLen += len(p)
		d.prevCR = p[len(p)-1] == '\r'
		return nil, nil
	}
	line := p[:i]
	hasCR := (i > 0 && p[i-1] == '\r') || (i == 0 && d.prevCR)
	if err := d.writeRaw(line); err != nil {
		return nil, err
	}
	if !hasCR {
		if err := d.w.WriteByte('\r'); err != nil {
			return nil, err
		}
	}
	if err := d.w.WriteByte('\n'); err != nil {
		return nil, err
	}
	if d.inHeader {
		// An empty line (just CR LF, or a bare LF) ends the header.
		if d.lineLen+len(line) == 0 || (d.lineLen+len(line) == 1 && hasCR) {
			d.inHeader = false
		}
	}
	d.bol, d.prevCR, d.lineLen = true, false, 0
	return p[i+1:], nil
}

// writeRaw writes octets within one line, applying the NUL workaround.
func (d *dotWriter) writeRaw(p []byte) error {
	if !d.workarounds.OutlookNoNULs || bytes.IndexByte(p, 0) < 0 {
		_, err := d.w.Write(p)
		return err
	}
	for _, c := range p {
		if c == 0 {
			c = 0x80
		}
		if err := d.w.WriteByte(c); err != nil {
			return err
		}
	}
	return nil
}

// Close ends the body. It does not flush.
func (d *dotWriter) Close() error {
	if !d.bol {
		if _, err := d.w.WriteString("\r\n"); err != nil {
			return err
		}
		d.lineLen = 0
	}
	if d.workarounds.OENSEOH && d.inHeader {
		if _, err := d.w.WriteString("\r\n"); err != nil {
			return err
		}
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

// countingWriter counts octets written to the client.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
