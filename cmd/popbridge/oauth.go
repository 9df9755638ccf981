package main

import (
	"io"
	"os"

	"github.com/popbridge/popbridge/bridge"
	oauthcli "github.com/popbridge/popbridge/oauth/cli"
)

// oauthCommand runs "popbridge oauth ..." (docs/oauth2.md).
func oauthCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return oauthcli.Run(args, oauthcli.Env{
		Getenv: getenv, Stdin: os.Stdin, Stdout: stdout, Stderr: stderr,
		OpenStore: bridge.OpenStore,
	})
}
