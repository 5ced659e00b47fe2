package migrations

import (
	"context"
	"database/sql"

	"github.com/animesync/animesync/shared/db"
)

// Connect opens dbURL for Push and Status (`animesync db push`, `migration
// list`); close releases it.
func Connect(ctx context.Context, dbURL string) (sqlDB *sql.DB, close func(), err error) {
	pool, err := db.Open(ctx, dbURL, 0)
	if err != nil {
		return nil, nil, err
	}
	sqlDB = db.SQLDB(pool)
	return sqlDB, func() { sqlDB.Close(); pool.Close() }, nil
}
