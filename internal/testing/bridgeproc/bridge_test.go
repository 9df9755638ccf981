package bridgeproc

import "testing"

func TestMatches(t *testing.T) {
	e := map[string]any{"event": "session_end", "tls": true, "client_port": float64(4000)}
	for _, tc := range []struct {
		want map[string]string
		ok   bool
	}{
		{map[string]string{"event": "session_end"}, true},
		{map[string]string{"tls": "true", "client_port": "4000"}, true},
		{map[string]string{"tls": "false"}, false},
		{map[string]string{"missing": ""}, false},
	} {
		if got := Matches(e, tc.want); got != tc.ok {
			t.Errorf("Matches(%v) = %v, want %v", tc.want, got, tc.ok)
		}
	}
}

func TestSyncBufferTail(t *testing.T) {
	var b SyncBuffer
	b.Write([]byte("one\ntwo\nthree\n"))
	if got := b.Tail(2); got != "two\nthree" {
		t.Fatalf("Tail(2) = %q", got)
	}
}
