// Package supabase is the platform Supabase used to provide around the Edge
// Functions: the gateway, the realtime server, the composition root, and the
// project's Supabase CLI config.toml, embedded as the default function settings.
package supabase

import _ "embed"

// ConfigTOML is supabase/config.toml as shipped.
//
//go:embed config.toml
var ConfigTOML []byte
