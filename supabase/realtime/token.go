package realtime

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/animesync/animesync/shared/auth"
)

// tokenError is a rejected token, phrased as Supabase Realtime phrases it:
// Code prefixes join error reasons ("InvalidJWTToken: …"), Message alone is
// used in upgrade refusals and system frames.
type tokenError struct {
	Code    string
	Message string
	cause   error
}

func (e *tokenError) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Message + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *tokenError) Unwrap() error { return e.cause }

// reason is the join-error form "<Code>: <message>".
func (e *tokenError) reason() string { return e.Code + ": " + e.Message }

const msgRoleExpRequired = "Fields `role` and `exp` are required in JWT"

// verifyToken checks a connection or channel token the way Realtime does:
// the project verifier decides validity, and a JWT must also carry role and
// exp. Opaque sb_ keys have no exp and are accepted as the verifier maps
// them (publishable → anon, secret → service_role).
func verifyToken(v *auth.Verifier, token string, now time.Time) (*auth.Claims, *tokenError) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, &tokenError{Code: "InvalidJWTToken", Message: "API key is missing"}
	}
	claims, err := v.VerifyToken(token)
	if err != nil {
		return nil, classify(token, err, now)
	}
	if strings.HasPrefix(token, "sb_") {
		return claims, nil
	}
	if claims.Role == "" || claims.ExpiresAt.IsZero() {
		return nil, &tokenError{Code: "InvalidJWTToken", Message: msgRoleExpRequired}
	}
	return claims, nil
}

// classify turns a verifier error into Realtime's wording.
func classify(token string, err error, now time.Time) *tokenError {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &tokenError{Code: "InvalidJWTToken", Message: expiredMessage(token, now), cause: err}
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return &tokenError{Code: "InvalidJWTToken", Message: msgRoleExpRequired, cause: err}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return &tokenError{Code: "JwtSignatureError", Message: "Failed to validate JWT signature", cause: err}
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return &tokenError{Code: "InvalidJWTToken", Message: "Token expiration time is invalid", cause: err}
	}
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Code == auth.CodeUnsupportedAlgorithm {
		return &tokenError{Code: "JwtSignerError", Message: "Failed to generate JWT signer", cause: err}
	}
	return &tokenError{Code: "MalformedJWT", Message: "The token provided is not a valid JWT", cause: err}
}

// expiredMessage renders "Token has expired N seconds ago" from the
// token's own exp (already known to be in the past).
func expiredMessage(token string, now time.Time) string {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err == nil {
		if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
			return fmt.Sprintf("Token has expired %d seconds ago", int64(math.Round(now.Sub(exp.Time).Seconds())))
		}
	}
	return "Token has expired"
}

// upgradeErrorText is the {"error": …} text of a refused upgrade; the
// Elixir server drops the "N seconds ago" there.
func upgradeErrorText(e *tokenError) string {
	if strings.HasPrefix(e.Message, "Token has expired") {
		return "Token has expired"
	}
	return e.Message
}

// canRead reports whether claims may join the private channel sub. Private
// channels exist for rooms: the service role reads everything, and a room's
// realtime_token (room_id claim) reads the channel room:<room_id>.
func canRead(claims *auth.Claims, sub string) bool {
	if claims == nil {
		return false
	}
	if claims.Role == auth.RoleServiceRole {
		return true
	}
	return claims.RoomID != "" && sub == "room:"+claims.RoomID
}
