package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/animesync/animesync/shared/config"
)

// WriteStatus says whether a server answers on cfg's address and prints
// what a client needs to reach it, the way `supabase status` does for a
// local stack (`animesync status`).
func WriteStatus(ctx context.Context, w io.Writer, cfg *config.Config) error {
	host := cfg.Host
	if host == "0.0.0.0" || host == "" {
		host = "127.0.0.1"
	}
	api := fmt.Sprintf("http://%s:%d", host, cfg.Port)
	if _, err := Probe(ctx, api+"/health", 2*time.Second); err != nil {
		fmt.Fprintf(w, "animesync is not running at %s (%v)\n\n", api, err)
	} else {
		fmt.Fprintf(w, "animesync is running at %s\n\n", api)
	}
	dbURL := "(not configured)"
	if cfg.DBURL != "" {
		dbURL = cfg.DBURL
	}
	// A terminal, a CI log or a support ticket is no place for production
	// secrets: they are named as set, never printed.
	secret := func(v string) string {
		switch {
		case v == "":
			return "(not configured)"
		case cfg.Production():
			return "(set; hidden in production)"
		}
		return v
	}
	if cfg.Production() {
		if u, err := url.Parse(dbURL); err == nil && u.User != nil {
			dbURL = u.Redacted()
		}
	}
	for _, kv := range [][2]string{
		{"API URL", api},
		{"Functions URL", api + "/functions/v1"},
		{"Realtime URL", "ws://" + strings.TrimPrefix(api, "http://") + "/realtime/v1"},
		{"DB URL", dbURL},
		{"Identity", cfg.Identity},
		{"JWT secret", secret(cfg.JWTSecret)},
		{"Publishable key", cfg.PublishableKey},
		{"Secret key", secret(cfg.SecretKey)},
		{"anon key", cfg.AnonKey},
		{"service_role key", secret(cfg.ServiceRoleKey)},
	} {
		if _, err := fmt.Fprintf(w, "%17s: %s\n", kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// Probe GETs url and returns its body (at most 4 KiB), failing unless it
// answers 200 within timeout (`animesync status` and `healthcheck`).
func Probe(ctx context.Context, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	body := strings.TrimSpace(string(raw))
	if res.StatusCode != http.StatusOK {
		return body, fmt.Errorf("%s answered %d: %s", url, res.StatusCode, body)
	}
	return body, nil
}
