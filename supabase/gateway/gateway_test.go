package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/animesync/animesync/functions"
	"github.com/animesync/animesync/shared/auth"
	"github.com/animesync/animesync/shared/config"
	"github.com/animesync/animesync/shared/dbtest"
	"github.com/animesync/animesync/supabase"
	"github.com/animesync/animesync/supabase/gateway"
	"github.com/animesync/animesync/supabase/server/servertest"
)

var verifyAll = map[string]config.FunctionSettings{}

func init() {
	on := true
	for _, name := range []string{"rooms-create", "rooms-join", "rooms-list-public"} {
		verifyAll[name] = config.FunctionSettings{VerifyJWT: &on}
	}
}

type keys struct {
	ec     *ecdsa.PrivateKey
	rsa    *rsa.PrivateKey
	keySet auth.KeySet
}

// newKeys writes a JWKS file with one ES256 and one RS256 key and loads it
// the way `animesync serve` does with SUPABASE_JWKS_FILE.
func newKeys(t *testing.T) *keys {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	set := map[string]any{"keys": []map[string]any{
		{"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256", "use": "sig",
			"x": b64(ec.X.FillBytes(make([]byte, 32))), "y": b64(ec.Y.FillBytes(make([]byte, 32)))},
		{"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig",
			"n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
	}}
	raw, _ := json.Marshal(set)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := auth.LoadJWKS(context.Background(), path, "")
	if err != nil {
		t.Fatal(err)
	}
	return &keys{ec: ec, rsa: rk, keySet: ks}
}

func sign(t *testing.T, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeyCheckWhenVerifyJWTIsOn(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	api := servertest.New(t, servertest.Options{Settings: verifyAll, KeySet: k.keySet})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	future := time.Now().Add(time.Hour).Unix()
	secret := []byte(config.DevJWTSecret)
	anonUser := jwt.MapClaims{"role": "anon", "exp": future}
	user := jwt.MapClaims{"role": "authenticated", "sub": "8d0fd2b3-9ca7-4d9e-a95f-9e13dded323e", "exp": future}

	cases := []struct {
		name    string
		headers []string
		status  int
		code    string
	}{
		{"no credentials", nil, 401, "UNAUTHORIZED_NO_AUTH_HEADER"},
		{"not a bearer", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, "UNAUTHORIZED_INVALID_JWT_FORMAT"},
		{"garbage bearer", []string{"Authorization", "Bearer not-a-jwt"}, 401, "UNAUTHORIZED_INVALID_JWT_FORMAT"},
		{"HS256 wrong secret", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, "", []byte("another-secret-of-at-least-32-characters!"), anonUser)}, 401, "UNAUTHORIZED_LEGACY_JWT"},
		{"HS256 expired", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, "", secret, jwt.MapClaims{"role": "anon", "exp": time.Now().Add(-time.Minute).Unix()})}, 401, "UNAUTHORIZED_LEGACY_JWT"},
		// Supabase refuses a token that never expires; so does realtime.
		{"HS256 without exp", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, "", secret, jwt.MapClaims{"role": "service_role"})}, 401, "UNAUTHORIZED_LEGACY_JWT"},
		{"HS256 user without exp", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, "", secret, jwt.MapClaims{"role": "authenticated", "sub": "u1"})}, 401, "UNAUTHORIZED_LEGACY_JWT"},
		{"ES256 without exp", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodES256, "ec1", k.ec, jwt.MapClaims{"role": "authenticated", "sub": "u1"})}, 401, "UNAUTHORIZED_ASYMMETRIC_JWT"},
		{"HS256 not yet valid", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS256, "", secret, jwt.MapClaims{"role": "anon", "nbf": future})}, 401, "UNAUTHORIZED_LEGACY_JWT"},
		{"HS512", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodHS512, "", secret, anonUser)}, 401, "UNAUTHORIZED_UNSUPPORTED_TOKEN_ALGORITHM"},
		{"ES256 from another key", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodES256, "ec1", other, user)}, 401, "UNAUTHORIZED_ASYMMETRIC_JWT"},
		{"unknown sb_ key in apikey", []string{"apikey", "sb_publishable_somebody_elses"}, 401, "UNAUTHORIZED_INVALID_JWT_FORMAT"},
		{"HS256 anon key", []string{"Authorization", "Bearer " + config.DevAnonKey, "apikey", config.DevAnonKey}, 200, ""},
		{"HS256 service_role key", []string{"Authorization", "Bearer " + config.DevServiceRoleKey}, 200, ""},
		{"legacy anon key in apikey only", []string{"apikey", config.DevAnonKey}, 200, ""},
		{"publishable key in apikey only", []string{"apikey", config.DevPublishableKey}, 200, ""},
		{"secret key in apikey only", []string{"apikey", config.DevSecretKey}, 200, ""},
		{"sb_ key as bearer falls back to apikey", []string{"Authorization", "Bearer " + config.DevPublishableKey, "apikey", config.DevPublishableKey}, 200, ""},
		{"ES256 user session", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodES256, "ec1", k.ec, user), "apikey", config.DevPublishableKey}, 200, ""},
		{"RS256 user session", []string{"Authorization", "Bearer " + sign(t, jwt.SigningMethodRS256, "rsa1", k.rsa, user)}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := api.Do(http.MethodGet, "/functions/v1/rooms-list-public", nil, tc.headers...)
			if res.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.Status, tc.status, res.Body)
			}
			assertCORS(t, res)
			if tc.status != 401 {
				return
			}
			if res.Header.Get("sb-error-code") != tc.code || res.Header.Get("Access-Control-Expose-Headers") != "sb-error-code" {
				t.Errorf("headers: sb-error-code %q, expose %q", res.Header.Get("sb-error-code"), res.Header.Get("Access-Control-Expose-Headers"))
			}
			body := map[string]string{}
			if err := json.Unmarshal(res.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body["code"] != tc.code || body["message"] == "" || body["msg"] != body["message"] {
				t.Errorf("body = %s", res.Body)
			}
		})
	}
	// OPTIONS never needs a key.
	if res := api.Do(http.MethodOptions, "/functions/v1/rooms-create", nil); res.Status != http.StatusOK {
		t.Errorf("preflight with verify_jwt on: %d", res.Status)
	}
}

func TestSignedInUserOwnsItsIdentity(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	sub := "8d0fd2b3-9ca7-4d9e-a95f-9e13dded323e"
	tok := sign(t, jwt.SigningMethodHS256, "", []byte(config.DevJWTSecret),
		jwt.MapClaims{"role": "authenticated", "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	body := map[string]any{"title": "T", "anime_id": "a", "anime_title": "A", "episode_number": 1,
		"video_url": "https://e.com/v.mp4", "host_username": "Me"}

	res := api.Post("rooms-create", body, "Authorization", "Bearer "+tok)
	if res.Status != http.StatusCreated || res.Data(t)["room"].(map[string]any)["host_user_id"] != sub {
		t.Fatalf("host_user_id defaults to sub: %d %s", res.Status, res.Body)
	}
	body["host_user_id"] = "someone-else"
	res = api.Post("rooms-create", body, "Authorization", "Bearer "+tok)
	if res.Status != http.StatusForbidden || res.ErrorCode(t) != "IDENTITY_MISMATCH" {
		t.Fatalf("mismatch: %d %s", res.Status, res.Body)
	}
	// Every function whose body names its caller applies the same rule.
	for _, fn := range []string{"rooms-join", "rooms-leave", "rooms-delete", "sync-control", "comments-create", "members-update-status"} {
		res := api.Post(fn, map[string]any{"user_id": "someone-else"}, "Authorization", "Bearer "+tok)
		if res.Status != http.StatusForbidden || res.ErrorCode(t) != "IDENTITY_MISMATCH" {
			t.Errorf("%s: %d %s", fn, res.Status, res.Body)
		}
	}
	// With verify_jwt off a broken token is ignored: the caller is anonymous.
	res = api.Post("rooms-create", body, "Authorization", "Bearer broken")
	if res.Status != http.StatusCreated {
		t.Fatalf("open function with a broken token: %d %s", res.Status, res.Body)
	}
}

func TestGatewayTransport(t *testing.T) {
	t.Parallel()
	api := servertest.New(t)
	room := map[string]any{"title": "T", "anime_id": "a", "anime_title": "A", "episode_number": 1,
		"video_url": "https://e.com/v.mp4", "host_user_id": "u1", "host_username": "U"}
	raw, _ := json.Marshal(room)

	t.Run("preflight", func(t *testing.T) {
		res := api.Do(http.MethodOptions, "/functions/v1/rooms-join", nil,
			"Origin", "https://app.example", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization, x-client-info, apikey, content-type, x-room-key")
		if res.Status != http.StatusOK {
			t.Fatalf("status %d", res.Status)
		}
		assertCORS(t, res)
		if h := res.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "x-room-key") || !strings.Contains(h, "x-client-info") {
			t.Errorf("Allow-Headers %q", h)
		}
		if m := res.Header.Get("Access-Control-Allow-Methods"); m != "GET, POST, PUT, PATCH, DELETE, OPTIONS" {
			t.Errorf("Allow-Methods %q", m)
		}
	})
	t.Run("preflight of an unknown function", func(t *testing.T) {
		if res := api.Do(http.MethodOptions, "/functions/v1/nope", nil); res.Status != http.StatusOK {
			t.Fatalf("status %d", res.Status)
		}
	})
	t.Run("text/plain body is read as JSON", func(t *testing.T) {
		res := api.Do(http.MethodPost, "/functions/v1/rooms-create", string(raw), "Content-Type", "text/plain")
		if res.Status != http.StatusCreated {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
	t.Run("empty body without content type is {}", func(t *testing.T) {
		res := api.Do(http.MethodPost, "/functions/v1/rooms-list-public", nil)
		if res.Status != http.StatusOK {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
	t.Run("region query parameter and sub-path are tolerated", func(t *testing.T) {
		if res := api.Do(http.MethodPost, "/functions/v1/rooms-create?forceFunctionRegion=eu-west-1", string(raw), "x-region", "eu-west-1"); res.Status != http.StatusCreated {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		if res := api.Do(http.MethodGet, "/functions/v1/rooms-list-public/extra?limit=5", nil); res.Status != http.StatusOK {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
	t.Run("a project URL with a path prefix", func(t *testing.T) {
		if res := api.Do(http.MethodGet, "/base/functions/v1/rooms-list-public", nil); res.Status != http.StatusOK {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
	t.Run("unknown function", func(t *testing.T) {
		res := api.Do(http.MethodPost, "/functions/v1/rooms-teleport", "{}")
		assertCORS(t, res)
		m := res.JSON(t)
		if res.Status != 404 || m["code"] != "NOT_FOUND" || m["message"] != "Requested function was not found" || res.ErrorCode(t) != "FUNCTION_NOT_FOUND" {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
	t.Run("method not allowed", func(t *testing.T) {
		res := api.Do(http.MethodGet, "/functions/v1/rooms-create", nil)
		assertCORS(t, res)
		if res.Status != 405 || res.ErrorCode(t) != "METHOD_NOT_ALLOWED" || res.Header.Get("Allow") != "POST, OPTIONS" {
			t.Fatalf("%d %s Allow=%q", res.Status, res.Body, res.Header.Get("Allow"))
		}
	})
	t.Run("body over 64 KiB", func(t *testing.T) {
		big := `{"title":"` + strings.Repeat("x", 70_000) + `"}`
		res := api.Do(http.MethodPost, "/functions/v1/rooms-create", big)
		assertCORS(t, res)
		if res.Status != 413 || res.ErrorCode(t) != "PAYLOAD_TOO_LARGE" {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
	t.Run("health", func(t *testing.T) {
		res := api.Do(http.MethodGet, "/health", nil)
		m := res.JSON(t)
		if res.Status != 200 || m["status"] != "ok" || m["database"] != "ok" || m["version"] == "" {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
	})
}

func TestDatabaseDownIs503(t *testing.T) {
	t.Parallel()
	// A pool whose server does not answer: nothing listens on port 1.
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/gone?connect_timeout=1&sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	api := servertest.New(t, servertest.Options{DB: &dbtest.DB{Pool: dead, URL: "postgres://127.0.0.1:1/gone"}})
	res := api.Do(http.MethodGet, "/health", nil)
	if res.Status != http.StatusServiceUnavailable || res.JSON(t)["database"] != "unreachable" {
		t.Fatalf("health: %d %s", res.Status, res.Body)
	}
	res = api.Do(http.MethodGet, "/functions/v1/rooms-list-public", nil)
	assertCORS(t, res)
	if res.Status != http.StatusServiceUnavailable || res.ErrorCode(t) != "UNAVAILABLE" {
		t.Fatalf("function: %d %s", res.Status, res.Body)
	}
	if strings.Contains(string(res.Body), "127.0.0.1") || strings.Contains(string(res.Body), "connect") {
		t.Errorf("internals leaked: %s", res.Body)
	}
}

func assertCORS(t *testing.T, res *servertest.Response) {
	t.Helper()
	if res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Access-Control-Allow-Headers") == "" {
		t.Errorf("CORS headers missing on %d: %v", res.Status, res.Header)
	}
	if res.Header.Get("x-relay-error") != "" {
		t.Errorf("x-relay-error must never be sent")
	}
	if ct := res.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
}

// supabase/config.toml is where verify_jwt is set: it names every function
// of the registry, with verify_jwt explicit, and nothing else, so the
// shipped file and the served functions cannot drift apart.
func TestConfigTOMLAgreesWithRegistry(t *testing.T) {
	t.Parallel()
	settings, err := config.ParseFunctionSettings(supabase.ConfigTOML)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range functions.Registry(&functions.Deps{}) {
		names[f.Name] = true
		s, ok := settings[f.Name]
		if !ok {
			t.Errorf("supabase/config.toml has no [functions.%s]", f.Name)
			continue
		}
		if s.VerifyJWT == nil {
			t.Errorf("[functions.%s] does not set verify_jwt", f.Name)
		}
	}
	for name := range settings {
		if !names[name] {
			t.Errorf("supabase/config.toml configures [functions.%s], which the registry does not have", name)
		}
	}
	// Without a section, Supabase's defaults hold.
	for _, r := range gateway.Resolve(functions.Registry(&functions.Deps{}), nil) {
		if !r.VerifyJWT || !r.Enabled {
			t.Errorf("%s without config: verify_jwt=%v enabled=%v, want Supabase's true, true", r.Name, r.VerifyJWT, r.Enabled)
		}
	}
}
