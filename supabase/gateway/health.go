package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/version"
)

// Health answers GET /health: 200 while the database answers, else 503.
type Health struct {
	Pool    *pgxpool.Pool
	Started time.Time
	// Realtime reports the built-in realtime server, when it runs.
	Realtime func() any
}

type healthReport struct {
	Status        string `json:"status"`
	Database      string `json:"database"`
	Realtime      any    `json:"realtime"`
	Version       string `json:"version"`
	UptimeSeconds int64  `json:"uptime_seconds"`
}

func (h *Health) handle(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	rep := healthReport{Status: "ok", Database: "ok", Realtime: "disabled", Version: version.Version,
		UptimeSeconds: int64(time.Since(h.Started).Seconds())}
	if h.Realtime != nil {
		rep.Realtime = h.Realtime()
		// The functions work, but realtime does not deliver everything:
		// still 200, so that a load balancer keeps the process.
		if reportStatus(rep.Realtime) == "degraded" {
			rep.Status = "degraded"
		}
	}
	status := http.StatusOK
	if err := h.Pool.Ping(ctx); err != nil {
		rep.Status, rep.Database, status = "unavailable", "unreachable", http.StatusServiceUnavailable
	}
	return c.JSON(status, rep)
}

// handleRealtime answers GET /health/realtime with the realtime section of
// /health alone: {"status":"disabled"} while no realtime server reports, else
// what it reports, with 503 when its status is neither ok nor disabled.
func (h *Health) handleRealtime(c echo.Context) error {
	if h.Realtime == nil {
		return c.JSON(http.StatusOK, map[string]string{"status": "disabled"})
	}
	rep := h.Realtime()
	if s, ok := rep.(string); ok {
		rep = map[string]string{"status": s}
	}
	status := http.StatusOK
	if st := reportStatus(rep); st != "ok" && st != "disabled" {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, rep)
}

// reportStatus is the "status" member of a report of any shape.
func reportStatus(rep any) string {
	raw, err := json.Marshal(rep)
	if err != nil {
		return ""
	}
	var s struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s.Status
}
