package functions

import (
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/store"
)

// rooms-list-public: public rooms that have members, filtered, sorted, paged.
func (d *Deps) roomsListPublic(c echo.Context) error {
	var req roomsListPublicRequest
	if err := d.parse(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()

	where := `where is_public and member_count > 0
		and ($1::text is null or anime_id = $1)
		and ($2::int is null or episode_number = $2)
		and ($3::text is null or title ilike $3 or anime_title ilike $3)`
	order := `order by member_count desc, created_at desc, room_id`
	if req.Sort == "recent" {
		order = `order by created_at desc, room_id`
	}
	args := []any{nullIfEmpty(req.AnimeID), req.EpisodeNumber, likePattern(req.Search)}

	res := roomsListPublicResponse{Rooms: []*store.Room{}}
	// One snapshot for the page and its total, so they agree.
	err := pgx.BeginTxFunc(ctx, d.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `select count(*) from public.rooms `+where, args...).Scan(&res.Pagination.Total); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `select `+store.RoomColumns+` from public.rooms `+where+` `+order+` limit $4 offset $5`,
			append(args, req.limit(), req.offset())...)
		if err != nil {
			return err
		}
		res.Rooms, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Room, error) { return store.ScanRoom(r) })
		return err
	})
	if err != nil {
		return err
	}
	res.Pagination = api.Page(req.limit(), req.offset(), res.Pagination.Total, len(res.Rooms))
	return api.OK(c, res)
}

// likePattern matches s anywhere, with LIKE's wildcards in s taken literally.
func likePattern(s string) *string {
	if s == "" {
		return nil
	}
	p := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s) + "%"
	return &p
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type roomsListPublicRequest struct {
	AnimeID       string `json:"anime_id"`
	EpisodeNumber *int   `json:"episode_number"`
	Search        string `json:"search"`
	Sort          string `json:"sort"`
	Limit         *int   `json:"limit"`
	Offset        *int   `json:"offset"`
}

func (r *roomsListPublicRequest) validate() error {
	var v api.Check
	v.Text("anime_id", r.AnimeID, 0, 100)
	v.Int("episode_number", r.EpisodeNumber, 1, 100000, false)
	v.Text("search", r.Search, 0, 100)
	v.OneOf("sort", r.Sort, "active", "recent")
	v.Int("limit", r.Limit, 1, 100, false)
	v.Int("offset", r.Offset, 0, 1_000_000, false)
	return v.Err()
}

func (r *roomsListPublicRequest) limit() int  { return intOr(r.Limit, 20) }
func (r *roomsListPublicRequest) offset() int { return intOr(r.Offset, 0) }

type roomsListPublicResponse struct {
	Rooms      []*store.Room  `json:"rooms"`
	Pagination api.Pagination `json:"pagination"`
}
