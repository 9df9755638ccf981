package bridgeproc

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Get fetches path from the admin listener and returns the status code
// and body.
func (b *Bridge) Get(path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + b.Admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Scrape returns /metrics as series (name{labels} exactly as exposed) ->
// value; the test fails if it cannot.
func (b *Bridge) Scrape() map[string]float64 {
	b.tb.Helper()
	code, body, err := b.Get("/metrics")
	if err != nil || code != http.StatusOK {
		b.tb.Fatalf("GET /metrics: %d %v", code, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			b.tb.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}
