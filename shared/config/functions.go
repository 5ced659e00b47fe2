package config

import (
	"fmt"

	"github.com/BurntSushi/toml"
)

// FunctionSettings is a [functions.<name>] section of supabase/config.toml.
type FunctionSettings struct {
	Enabled   *bool `toml:"enabled"`
	VerifyJWT *bool `toml:"verify_jwt"`
}

// ParseFunctionSettings reads the [functions.*] sections of a Supabase CLI
// config.toml; every other section is the CLI's business and ignored.
func ParseFunctionSettings(data []byte) (map[string]FunctionSettings, error) {
	var doc struct {
		Functions map[string]FunctionSettings `toml:"functions"`
	}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, fmt.Errorf("parse supabase/config.toml: %w", err)
	}
	if doc.Functions == nil {
		doc.Functions = map[string]FunctionSettings{}
	}
	return doc.Functions, nil
}
