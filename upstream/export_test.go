package upstream

// Test-only views of unexported state, kept out of the production files.

// state is the breaker's state for tests: "closed", "open" or "half-open".
func (br *breaker) state() string {
	br.mu.Lock()
	defer br.mu.Unlock()
	switch {
	case !br.open:
		return "closed"
	case br.probing || !br.now().Before(br.openUntil):
		return "half-open"
	}
	return "open"
}
