// Package migrations holds the platform's schema as goose SQL files, embedded
// in the binary. The same files are supabase/migrations, so the real Supabase
// CLI and `animesync db push` apply one history.
package migrations

import "embed"

// FS holds every <14-digit UTC version>_<name>.sql file.
//
//go:embed *.sql
var FS embed.FS
