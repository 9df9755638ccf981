package main

import (
	"context"
	"io"
	"os"

	"github.com/popbridge/popbridge/oauth"
	oauthcli "github.com/popbridge/popbridge/oauth/cli"
	"github.com/popbridge/popbridge/store"
)

// oauthCommand runs "popbridge oauth ..." (docs/oauth2.md).
func oauthCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return oauthcli.Run(args, oauthcli.Env{
		Getenv: getenv, Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
		OpenStore: func(ctx context.Context, url, dataDir string) (oauth.Store, func() error, error) {
			st, err := store.Open(ctx, url, dataDir)
			if err != nil {
				return nil, nil, err
			}
			return oauth.FromStore(st), st.Close, nil
		},
	})
}
