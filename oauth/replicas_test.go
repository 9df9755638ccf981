package oauth

import (
	"context"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testing/oauthserver"
	"github.com/popbridge/popbridge/internal/testing/testenv"
	"github.com/popbridge/popbridge/store"
)

// TestReplicasShareOneRefresh runs two bridges, each with its own Manager
// (so nothing in-process is shared) on one PostgreSQL store, as two
// replicas would: 20 logins spread over both after the access token
// expired cost one token request, by the store's lock and the version
// compare-and-swap alone.
func TestReplicasShareOneRefresh(t *testing.T) {
	if _, err := testenv.PostgresBinDir(); err != nil && !testenv.InCI() {
		t.Skipf("PostgreSQL: %v", err)
	}
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	open := func() Store {
		s, err := store.Open(context.Background(), url, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return FromStore(s)
	}
	idp := oauthserver.Start(t, oauthserver.Options{})
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{
		Users:  []testenv.User{{Name: alice, Password: "seed"}},
		OAuth2: &testenv.DovecotOAuth2{IntrospectionURL: idp.URL + "/introspect"},
	})
	want := message(4)
	dc.Append(t, alice, "INBOX", want)
	key, err := NewServerKey()
	if err != nil {
		t.Fatal(err)
	}
	r1 := newReplica(t, dc, idp, ModeUser, open(), key)
	r2 := newReplica(t, dc, idp, ModeUser, open(), key)
	r1.enroll(t, alice, map[string]string{"scanner": "pw"})
	idp.Advance(61 * time.Minute)

	parallelRetr(t, 20, func(i int) *env { return []*env{r1, r2}[i%2] }, "pw", want)
	if n := idp.TokenRequests("refresh_token"); n != 1 || idp.ReuseDetected() {
		t.Errorf("%d refresh requests from two replicas (reuse detected %v), want exactly 1", n, idp.ReuseDetected())
	}
}
