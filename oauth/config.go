package oauth

import (
	"fmt"

	"github.com/popbridge/popbridge/internal/config"
)

// ProvidersFromConfig turns the config file's providers: into Providers,
// with the known endpoints filled in and the secret files read. Errors
// name where the provider was set.
func ProvidersFromConfig(cfg *config.Config) (map[string]*Provider, error) {
	out := make(map[string]*Provider, len(cfg.Providers))
	for name, p := range cfg.Providers {
		op := &Provider{Name: name, Type: p.Type, ClientID: p.ClientID, ClientSecretFile: p.ClientSecretFile,
			Tenant: p.Tenant, DeviceAuthURL: p.DeviceAuthURL, AuthURL: p.AuthURL, TokenURL: p.TokenURL,
			Scopes: p.Scopes, AppScopes: p.AppScopes, ServiceAccountFile: p.ServiceAccountFile}
		if err := op.Load(); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Where("providers."+name), err)
		}
		out[name] = op
	}
	return out, nil
}
