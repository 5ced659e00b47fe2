package gateway

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/auth"
)

// checkKey is Supabase's verify_jwt. With verify on, a request without a
// valid project key or token gets the gateway's 401. With it off, a valid
// credential still identifies the caller (a signed-in user's sub binds
// user_id) and an invalid one is ignored, as the open platform expects;
// the refusal is kept for the member identity mode, which names it.
func checkKey(v *auth.Verifier, verify bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			claims, err := v.VerifyRequest(req.Header.Get("Authorization"), req.Header.Get("apikey"))
			ctx := req.Context()
			if err != nil {
				if verify {
					return unauthorized(c, err)
				}
				claims = nil
				ctx = auth.WithRefused(ctx, err)
			}
			c.SetRequest(req.WithContext(auth.WithClaims(ctx, claims)))
			return next(c)
		}
	}
}

// unauthorized writes the Supabase gateway's 401, which is not the function
// envelope: {code, message, msg} and an sb-error-code header.
func unauthorized(c echo.Context, err error) error {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		ae = &auth.Error{Code: auth.CodeInvalidJWTFormat, Message: "Invalid JWT format"}
	}
	h := c.Response().Header()
	h.Set("sb-error-code", ae.Code)
	h.Set("Access-Control-Expose-Headers", "sb-error-code")
	c.Set(logErrorKey, err)
	return c.JSON(http.StatusUnauthorized, map[string]string{"code": ae.Code, "message": ae.Message, "msg": ae.Message})
}
