// Package benchkit holds what the benchmark tools (scripts/benchclient,
// scripts/benchworkload) do alike.
package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/animesync/animesync/shared/config"
)

// Invoke calls a function the way supabase-js's functions.invoke does: it
// POSTs body as JSON with the development anon key and decodes the data of
// a 2xx response's {"success":true,"data":…} envelope into out (nil:
// discarded). Any other status is an error carrying the response body.
func Invoke(ctx context.Context, hc *http.Client, url string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("apikey", config.DevAnonKey)
	req.Header.Set("Authorization", "Bearer "+config.DevAnonKey)
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", res.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return err
	}
	return json.Unmarshal(env.Data, out)
}
