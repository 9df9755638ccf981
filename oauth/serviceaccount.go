package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// serviceAccount is the part of a Google service account's JSON key that
// the JWT bearer grant (RFC 7523) needs. It is read here rather than with
// golang.org/x/oauth2/google, which would bring in the Google Cloud
// metadata client for nothing.
type serviceAccount struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

func loadServiceAccount(path string) (*serviceAccount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sa serviceAccount
	if err := json.Unmarshal(data, &sa); err != nil {
		return nil, errors.New("not a service account key (JSON)")
	}
	if sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errors.New(`not a service account key (want "type": "service_account" with client_email and private_key)`)
	}
	if sa.TokenURI == "" {
		sa.TokenURI = "https://oauth2.googleapis.com/token"
	}
	return &sa, nil
}

// delegatedToken gets a token for the service account acting as mailbox
// (Google Workspace domain-wide delegation).
func (sa *serviceAccount) delegatedToken(ctx context.Context, mailbox string, scopes []string) (*oauth2.Token, error) {
	c := &jwt.Config{
		Email:        sa.ClientEmail,
		PrivateKey:   []byte(sa.PrivateKey),
		PrivateKeyID: sa.PrivateKeyID,
		Subject:      mailbox,
		Scopes:       scopes,
		TokenURL:     sa.TokenURI,
	}
	return c.TokenSource(ctx).Token()
}
