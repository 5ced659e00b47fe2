package functions

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
)

// resolveUser applies API.md's identity rule. The platform is open access:
// callers name themselves. But a signed-in user's token (role
// authenticated) fixes the identity to its sub: userID defaults to it and
// may not differ from it.
func resolveUser(c echo.Context, field, userID string) (string, error) {
	claims := auth.FromContext(c.Request().Context())
	if !claims.IsUser() {
		return userID, nil
	}
	if userID == "" {
		return claims.Subject, nil
	}
	if userID != claims.Subject {
		return "", api.Errorf(http.StatusForbidden, api.CodeIdentityMismatch,
			"%s %q does not match the signed-in user", field, userID)
	}
	return userID, nil
}
