package gateway

import (
	"context"
	"log/slog"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// accessLog writes one structured line per request. A failure's cause is
// logged here, once, with the request id; 5xx at error level.
func accessLog(log *slog.Logger, labels routeLabels) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURI: true, LogMethod: true, LogLatency: true,
		LogRequestID: true, LogRemoteIP: true, LogUserAgent: true, HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			attrs := []slog.Attr{
				slog.String("method", v.Method),
				slog.String("uri", v.URI),
				slog.Int("status", v.Status),
				slog.Float64("latency_ms", float64(v.Latency.Microseconds())/1000),
				slog.String("request_id", v.RequestID),
				slog.String("remote_ip", v.RemoteIP),
			}
			attrs = append(attrs, slog.String("route", labels.of(c.Request().URL.Path)))
			level := slog.LevelInfo
			if err, ok := c.Get(logErrorKey).(error); ok && err != nil {
				attrs = append(attrs, slog.String("error", err.Error()))
				if v.Status >= 500 {
					level = slog.LevelError
				}
			}
			log.LogAttrs(context.Background(), level, "request", attrs...)
			return nil
		},
	})
}
