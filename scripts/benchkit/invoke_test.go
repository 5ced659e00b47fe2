package benchkit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/animesync/animesync/scripts/benchkit"
	"github.com/animesync/animesync/shared/config"
)

func TestInvoke(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if r.Header.Get("apikey") != config.DevAnonKey || r.Header.Get("Authorization") != "Bearer "+config.DevAnonKey ||
			json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, `{"success":false}`, http.StatusUnauthorized)
			return
		}
		if body["room_id"] == "gone" {
			http.Error(w, `{"success":false,"error":{"code":"ROOM_NOT_FOUND"}}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"success":true,"data":{"room_id":"` + body["room_id"].(string) + `"}}`))
	}))
	defer srv.Close()
	ctx := context.Background()

	var got struct {
		RoomID string `json:"room_id"`
	}
	if err := benchkit.Invoke(ctx, srv.Client(), srv.URL, map[string]any{"room_id": "r1"}, &got); err != nil || got.RoomID != "r1" {
		t.Errorf("2xx: data %+v, err %v", got, err)
	}
	if err := benchkit.Invoke(ctx, srv.Client(), srv.URL, map[string]any{"room_id": "r2"}, nil); err != nil {
		t.Errorf("2xx with the data discarded: %v", err)
	}
	err := benchkit.Invoke(ctx, srv.Client(), srv.URL, map[string]any{"room_id": "gone"}, &got)
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "ROOM_NOT_FOUND") {
		t.Errorf("404: err %v, want the status and the body", err)
	}
}
