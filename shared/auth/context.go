package auth

import "context"

type claimsKey struct{}

// WithClaims attaches the caller's verified claims to ctx.
func WithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the caller's verified claims, or nil for an anonymous
// caller (no credential, or one that a verify_jwt=false function ignored).
func FromContext(ctx context.Context) *Claims {
	c, _ := ctx.Value(claimsKey{}).(*Claims)
	return c
}
