// Package auth verifies the keys and tokens a Supabase client presents and
// mints the short-lived realtime tokens the functions hand out.
//
// It mirrors the Supabase gateway: HS256 tokens are checked with the project
// JWT secret, ES256/RS256 tokens against the project's JWKS, and the new
// opaque API keys (sb_publishable_…, sb_secret_…) map to the anon and
// service_role roles.
package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles a verified caller can have. They name PostgreSQL roles.
const (
	RoleAnon          = "anon"
	RoleAuthenticated = "authenticated"
	RoleServiceRole   = "service_role"
)

// Claims is what a verified key or token says about its bearer.
type Claims struct {
	Role    string
	Subject string
	// RoomID is the room a realtime_token was minted for; empty otherwise.
	RoomID    string
	ExpiresAt time.Time
	// Raw holds every claim of a JWT, for request.jwt.claims. Opaque API
	// keys get a minimal {"role": …}.
	Raw map[string]any
}

// IsUser reports whether the claims belong to a signed-in user, whose
// identity the functions must respect.
func (c *Claims) IsUser() bool { return c != nil && c.Role == RoleAuthenticated && c.Subject != "" }

// IsMemberToken reports whether the claims are a room's member token (the
// realtime_token rooms-create and rooms-join mint): they prove that their
// bearer is the member Subject of room RoomID.
func (c *Claims) IsMemberToken() bool {
	return c != nil && c.Role == RoleAnon && c.RoomID != "" && c.Subject != ""
}

// Error is a failed key check, with the code the Supabase gateway uses.
type Error struct {
	Code    string
	Message string
	cause   error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.cause.Error()
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.cause }

// Gateway error codes (SUPABASE-COMPAT §3.3).
const (
	CodeNoAuthHeader         = "UNAUTHORIZED_NO_AUTH_HEADER"
	CodeInvalidJWTFormat     = "UNAUTHORIZED_INVALID_JWT_FORMAT"
	CodeLegacyJWT            = "UNAUTHORIZED_LEGACY_JWT"
	CodeAsymmetricJWT        = "UNAUTHORIZED_ASYMMETRIC_JWT"
	CodeUnsupportedAlgorithm = "UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM"
)

// ErrNoCredentials is returned when a request carries neither a bearer token
// nor an API key.
var ErrNoCredentials = &Error{Code: CodeNoAuthHeader, Message: "Missing authorization header"}

// KeySet resolves the public key for an asymmetric token.
type KeySet interface {
	Keyfunc(*jwt.Token) (any, error)
}

// Verifier checks keys and tokens against the project's secrets.
type Verifier struct {
	secret         []byte
	publishableKey string
	secretKey      string
	jwks           KeySet
	now            func() time.Time
}

// VerifierConfig is what a Verifier needs; empty fields disable that path.
type VerifierConfig struct {
	JWTSecret      string
	PublishableKey string
	SecretKey      string
	JWKS           KeySet
	Now            func() time.Time
}

// NewVerifier builds a Verifier.
func NewVerifier(c VerifierConfig) *Verifier {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	return &Verifier{
		secret:         []byte(c.JWTSecret),
		publishableKey: c.PublishableKey,
		secretKey:      c.SecretKey,
		jwks:           c.JWKS,
		now:            now,
	}
}

// VerifyRequest applies the gateway's rule for picking a credential: the
// bearer token of Authorization, unless it is missing or an sb_ key, in
// which case the apikey header.
func (v *Verifier) VerifyRequest(authorization, apikey string) (*Claims, error) {
	if authorization != "" {
		token, ok := strings.CutPrefix(authorization, "Bearer ")
		if !ok || token == "" {
			return nil, &Error{Code: CodeInvalidJWTFormat, Message: "Invalid JWT format"}
		}
		if !strings.HasPrefix(token, "sb_") {
			return v.VerifyToken(token)
		}
		if apikey == "" {
			apikey = token
		}
	}
	if apikey == "" {
		return nil, ErrNoCredentials
	}
	return v.VerifyToken(apikey)
}

// VerifyToken checks one credential: an opaque sb_ API key or a JWT.
func (v *Verifier) VerifyToken(token string) (*Claims, error) {
	if strings.HasPrefix(token, "sb_") {
		return v.verifyAPIKey(token)
	}
	return v.verifyJWT(token)
}

func (v *Verifier) verifyAPIKey(key string) (*Claims, error) {
	role := ""
	switch {
	case v.publishableKey != "" && constantTimeEqual(key, v.publishableKey):
		role = RoleAnon
	case v.secretKey != "" && constantTimeEqual(key, v.secretKey):
		role = RoleServiceRole
	default:
		return nil, &Error{Code: CodeInvalidJWTFormat, Message: "Invalid JWT format", cause: errors.New("unknown API key")}
	}
	return &Claims{Role: role, Raw: map[string]any{"role": role}}, nil
}

func (v *Verifier) verifyJWT(raw string) (*Claims, error) {
	parser := jwt.NewParser(jwt.WithTimeFunc(v.now), jwt.WithLeeway(0))
	unverified, _, err := parser.ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return nil, &Error{Code: CodeInvalidJWTFormat, Message: "Invalid JWT format", cause: err}
	}
	alg, _ := unverified.Header["alg"].(string)

	var keyfunc jwt.Keyfunc
	code := CodeLegacyJWT
	switch alg {
	case "HS256":
		if len(v.secret) == 0 {
			return nil, &Error{Code: CodeLegacyJWT, Message: "Invalid JWT", cause: errors.New("no JWT secret configured")}
		}
		keyfunc = func(*jwt.Token) (any, error) { return v.secret, nil }
	case "ES256", "RS256":
		code = CodeAsymmetricJWT
		if v.jwks == nil {
			return nil, &Error{Code: code, Message: "Invalid JWT", cause: errors.New("no JWKS configured")}
		}
		keyfunc = v.jwks.Keyfunc
	case "":
		return nil, &Error{Code: CodeInvalidJWTFormat, Message: "Invalid JWT format", cause: errors.New("no alg")}
	default:
		return nil, &Error{Code: CodeUnsupportedAlgorithm, Message: "Unsupported JWT algorithm " + alg}
	}

	claims := jwt.MapClaims{}
	// A token without exp would never expire; Supabase refuses it at the
	// gateway and in Realtime, and so does every path here.
	verifying := jwt.NewParser(jwt.WithTimeFunc(v.now), jwt.WithValidMethods([]string{alg}), jwt.WithExpirationRequired())
	if _, err := verifying.ParseWithClaims(raw, claims, keyfunc); err != nil {
		return nil, &Error{Code: code, Message: "Invalid JWT", cause: err}
	}
	return claimsFromJWT(claims), nil
}

func claimsFromJWT(m jwt.MapClaims) *Claims {
	c := &Claims{Raw: map[string]any(m)}
	c.Role, _ = m["role"].(string)
	c.Subject, _ = m["sub"].(string)
	c.RoomID, _ = m["room_id"].(string)
	if exp, err := m.GetExpirationTime(); err == nil && exp != nil {
		c.ExpiresAt = exp.Time
	}
	return c
}

// IsExpired reports whether a verification failed only because the token
// expired, which a client fixes differently from a forged one.
func IsExpired(err error) bool { return errors.Is(err, jwt.ErrTokenExpired) }

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// RoomTokenTTL is how long a realtime_token (and member_token) is valid.
const RoomTokenTTL = 24 * time.Hour

// MintRoomToken signs the realtime_token of API.md: role anon, sub = user,
// a room_id claim, 24 h expiry. Row-level security lets its holder read the
// rows of that (possibly private) room, and the same token is the
// member_token that proves its holder is that member of that room.
func (v *Verifier) MintRoomToken(userID, roomID string) (string, error) {
	if len(v.secret) == 0 {
		return "", errors.New("mint room token: no JWT secret configured")
	}
	now := v.now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":     "animesync",
		"role":    RoleAnon,
		"sub":     userID,
		"room_id": roomID,
		"iat":     now.Unix(),
		"exp":     now.Add(RoomTokenTTL).Unix(),
	})
	s, err := tok.SignedString(v.secret)
	if err != nil {
		return "", fmt.Errorf("mint room token: %w", err)
	}
	return s, nil
}
