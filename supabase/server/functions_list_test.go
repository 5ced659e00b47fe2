package server_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/animesync/animesync/supabase/server"
)

func TestWriteFunctions(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := server.WriteFunctions(&out, configOf(t, nil), true); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Functions []struct {
			Name      string   `json:"name"`
			Path      string   `json:"path"`
			Aliases   []string `json:"aliases"`
			VerifyJWT bool     `json:"verify_jwt"`
			Methods   []string `json:"methods"`
		} `json:"functions"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, f := range got.Functions {
		byName[f.Name] = i
		if f.Path != "/functions/v1/"+f.Name || f.VerifyJWT {
			t.Errorf("%+v: want its path and verify_jwt false from supabase/config.toml", f)
		}
	}
	create, ok := byName["rooms-create"]
	if !ok || strings.Join(got.Functions[create].Aliases, ",") != "/functions/v1/rooms/create-realtime" {
		t.Errorf("rooms-create missing or without its alias: %s", out.String())
	}
	if list, ok := byName["rooms-list-public"]; !ok || strings.Join(got.Functions[list].Methods, ",") != "GET,POST" {
		t.Errorf("rooms-list-public methods: %s", out.String())
	}

	// The table: a header, then one line per function with its path.
	out.Reset()
	if err := server.WriteFunctions(&out, configOf(t, nil), false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(got.Functions)+1 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("table of %d lines for %d functions:\n%s", len(lines), len(got.Functions), out.String())
	}
	for _, l := range lines[1:] {
		name := strings.Fields(l)[0]
		if !strings.Contains(l, "/functions/v1/"+name) {
			t.Errorf("line %q does not show its path", l)
		}
	}
}
