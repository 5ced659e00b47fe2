package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/auth"
)

// restClaims authenticates a broadcast request: the bearer token, else the
// apikey header, else the apikey of the websocket-style query string that
// realtime-js keeps on these URLs.
func (s *Server) restClaims(r *http.Request) (*auth.Claims, bool) {
	apikey := r.Header.Get("apikey")
	if apikey == "" {
		apikey = r.URL.Query().Get("apikey")
	}
	claims, err := s.verifier.VerifyRequest(r.Header.Get("Authorization"), apikey)
	if err != nil {
		return nil, false
	}
	return claims, true
}

func restError(c echo.Context, status int, message string) error {
	return c.JSON(status, map[string]string{"message": message})
}

// readBody reads at most the payload limit plus room for the envelope.
func (s *Server) readBody(r *http.Request, envelope int) ([]byte, error) {
	limit := int64(s.limits.maxPayload + envelope)
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read broadcast body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

var errTooLarge = fmt.Errorf("payload too large")

// bodyError answers a body that could not be read: 408 when it did not
// arrive in time (the gateway's BODY_READ_TIMEOUT), else 422 with message.
func bodyError(c echo.Context, err error, message string) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return restError(c, http.StatusRequestTimeout, "Request body did not arrive in time")
	}
	return restError(c, http.StatusUnprocessableEntity, message)
}

// batchBroadcast is POST /realtime/v1/api/broadcast: the fallback of
// channel.send() before the channel has joined (REALTIME.md §6.4).
func (s *Server) batchBroadcast(c echo.Context) error {
	claims, ok := s.restClaims(c.Request())
	if !ok {
		return restError(c, http.StatusUnauthorized, "Unauthorized")
	}
	body, err := s.readBody(c.Request(), 64<<10)
	if err != nil {
		return bodyError(c, err, "Payload too large")
	}
	var req struct {
		Messages []struct {
			Topic   string          `json:"topic"`
			Event   string          `json:"event"`
			Payload json.RawMessage `json:"payload"`
			Private bool            `json:"private"`
			ID      string          `json:"id"`
		} `json:"messages"`
	}
	// Invalid UTF-8 would be relayed byte for byte (encoding/json keeps it
	// in RawMessage) into text frames, which clients close the socket on.
	if !utf8.Valid(body) {
		return c.JSON(http.StatusUnprocessableEntity, map[string]any{"errors": map[string]any{"messages": []string{"is not valid UTF-8"}}})
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return c.JSON(http.StatusUnprocessableEntity, map[string]any{"errors": map[string]any{"messages": []string{"is invalid"}}})
	}
	// Validate the whole batch first: Realtime rejects it as one changeset.
	for i, m := range req.Messages {
		switch {
		case m.Topic == "" || m.Event == "":
			return c.JSON(http.StatusUnprocessableEntity, fieldErrors(i, "topic and event can't be blank"))
		case !isJSONObject(m.Payload):
			return c.JSON(http.StatusUnprocessableEntity, fieldErrors(i, "payload must be a map"))
		case len(m.Payload) > s.limits.maxPayload:
			return c.JSON(http.StatusUnprocessableEntity, fieldErrors(i, "Payload size exceeds tenant limit"))
		}
	}
	for _, m := range req.Messages {
		// Private messages the token may not write are skipped, and the
		// request still succeeds, as in Realtime.
		if m.Private && !canRead(claims, m.Topic) {
			continue
		}
		var meta []byte
		if m.ID != "" {
			meta, _ = json.Marshal(map[string]string{"id": m.ID})
		}
		out := newTextOutbound(topicPrefix+m.Topic, "broadcast", broadcastJSON(m.Event, m.Payload, meta))
		key := topicKey(m.Private, m.Topic)
		s.hub.publish(key, out, nil)
		s.relayBroadcast(key, m.Private, out)
	}
	return c.NoContent(http.StatusAccepted)
}

func fieldErrors(i int, msg string) map[string]any {
	return map[string]any{"errors": map[string]any{"messages": []map[string]any{{"index": i, "error": msg}}}}
}

// singleBroadcast is POST /realtime/v1/api/broadcast/:topic/events/:event,
// channel.httpSend(): the body is the payload (JSON, or raw bytes for
// application/octet-stream), ?private=true picks the private channel.
func (s *Server) singleBroadcast(c echo.Context) error {
	claims, ok := s.restClaims(c.Request())
	if !ok {
		return restError(c, http.StatusUnauthorized, "Unauthorized")
	}
	topic, err1 := url.PathUnescape(c.Param("topic"))
	event, err2 := url.PathUnescape(c.Param("event"))
	if err1 != nil || err2 != nil || topic == "" || event == "" {
		return restError(c, http.StatusUnprocessableEntity, "topic and event are required")
	}
	if !utf8.ValidString(topic) || !utf8.ValidString(event) {
		return restError(c, http.StatusUnprocessableEntity, "topic and event must be valid UTF-8")
	}
	private := strings.EqualFold(c.QueryParam("private"), "true")
	if private && !canRead(claims, topic) {
		return restError(c, http.StatusForbidden, "Unauthorized")
	}
	body, err := s.readBody(c.Request(), 0)
	if err != nil {
		return bodyError(c, err, "Payload size exceeds tenant limit")
	}
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	binary := mt == "application/octet-stream"
	if !binary {
		body = bytes.TrimSpace(body)
		if len(body) == 0 {
			body = []byte("{}")
		}
		if !json.Valid(body) {
			return restError(c, http.StatusUnprocessableEntity, "payload is not valid JSON")
		}
		if !utf8.Valid(body) {
			return restError(c, http.StatusUnprocessableEntity, "payload is not valid UTF-8")
		}
	}
	out := newUserBroadcast(topicPrefix+topic, &UserBroadcast{Event: event, Payload: body, Binary: binary})
	key := topicKey(private, topic)
	s.hub.publish(key, out, nil)
	s.relayBroadcast(key, private, out)
	return c.NoContent(http.StatusAccepted)
}
