package auth

import "context"

type claimsKey struct{}

type refusedKey struct{}

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

// WithRefused records why the caller's credential failed verification when
// the gateway let the request through anyway (verify_jwt = false), so that
// a function that needs proof of identity can say what was wrong with it.
func WithRefused(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, refusedKey{}, err)
}

// RefusedFrom is the error WithRefused recorded, or nil.
func RefusedFrom(ctx context.Context) error {
	err, _ := ctx.Value(refusedKey{}).(error)
	return err
}
