package auth

import (
	"context"
	"fmt"
	"os"

	"github.com/MicahParks/keyfunc/v3"
)

// LoadJWKS returns the key set for ES256/RS256 tokens: from a JSON file when
// path is set, else fetched (and refreshed in the background) from url.
// Both empty means asymmetric tokens cannot be verified: nil, nil.
func LoadJWKS(ctx context.Context, path, url string) (KeySet, error) {
	switch {
	case path != "":
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read JWKS file: %w", err)
		}
		ks, err := keyfunc.NewJWKSetJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("parse JWKS file %s: %w", path, err)
		}
		return ks, nil
	case url != "":
		ks, err := keyfunc.NewDefaultCtx(ctx, []string{url})
		if err != nil {
			return nil, fmt.Errorf("load JWKS from %s: %w", url, err)
		}
		return ks, nil
	}
	return nil, nil
}
