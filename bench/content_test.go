package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestGenerateSizes(t *testing.T) {
	hdr := int64(0)
	for _, size := range []int64{0, 1, 300, 301, 302, 4096, 4097, 1 << 20, 1<<20 + 1} {
		var crlf, lf bytes.Buffer
		spec := MessageSpec{Box: "small", Seq: 7, Size: size}
		exp, err := WriteMessage(&crlf, spec, "\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := WriteMessage(&lf, spec, "\n"); err != nil {
			t.Fatal(err)
		}
		if size == 0 {
			hdr = exp.Full.Size
		}
		if size >= hdr+2 && exp.Full.Size != size {
			t.Errorf("size %d: generated %d octets", size, exp.Full.Size)
		}
		if int64(crlf.Len()) != exp.Full.Size {
			t.Errorf("size %d: wrote %d octets, Expected says %d", size, crlf.Len(), exp.Full.Size)
		}
		if got := strings.ReplaceAll(crlf.String(), "\r\n", "\n"); got != lf.String() {
			t.Errorf("size %d: LF file differs from the CRLF message", size)
		}
		h := NewHasher()
		h.Write(crlf.Bytes())
		if h.Sum() != exp.Full {
			t.Errorf("size %d: Full sum differs from the bytes' sum", size)
		}
		end := bytes.Index(crlf.Bytes(), []byte("\r\n\r\n")) + 4
		h = NewHasher()
		h.Write(crlf.Bytes()[:end])
		if h.Sum() != exp.Header {
			t.Errorf("size %d: Header sum is not the header and blank line", size)
		}
	}
}

func TestGenerateDotLines(t *testing.T) {
	var b bytes.Buffer
	if _, err := WriteMessage(&b, MessageSpec{Box: "x", Seq: 1, Size: 8 << 10}, "\r\n"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\r\n.") {
		t.Error("no line starts with a dot: dot-stuffing goes untested")
	}
}

func TestPercentileAndMedian(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p := percentile(d, 50); p != 50 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(d, 99); p != 99 {
		t.Errorf("p99 = %d", p)
	}
	if p := percentile(d[:1], 99); p != 1 {
		t.Errorf("p99 of one = %d", p)
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}
