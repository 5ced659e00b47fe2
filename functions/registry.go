package functions

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Function is one Edge Function as the gateway serves it.
type Function struct {
	Name string
	// Methods the function answers; OPTIONS is always answered by the gateway.
	Methods []string
	// VerifyJWT is Supabase's default (true); supabase/config.toml overrides it.
	VerifyJWT bool
	// Aliases are extra paths under /functions/v1/ that reach the same handler.
	Aliases []string
	Handler echo.HandlerFunc
}

// Path is where the function is served.
func (f Function) Path() string { return "/functions/v1/" + f.Name }

var (
	write = []string{http.MethodPost}
	read  = []string{http.MethodGet, http.MethodPost}
)

// Registry lists every function that is built, in the order of API.md.
// A function that is not listed here answers 404, like an undeployed one.
func Registry(d *Deps) []Function {
	return []Function{
		{Name: "rooms-create", Methods: write, VerifyJWT: true, Aliases: []string{"rooms/create-realtime"}, Handler: d.roomsCreate},
		{Name: "rooms-join", Methods: write, VerifyJWT: true, Handler: d.roomsJoin},
		{Name: "rooms-leave", Methods: write, VerifyJWT: true, Handler: d.roomsLeave},
		{Name: "rooms-delete", Methods: write, VerifyJWT: true, Handler: d.roomsDelete},
		{Name: "rooms-list-public", Methods: read, VerifyJWT: true, Handler: d.roomsListPublic},
		{Name: "sync-control", Methods: write, VerifyJWT: true, Aliases: []string{"sync/control"}, Handler: d.syncControl},
		{Name: "sync-get-host-time", Methods: read, VerifyJWT: true, Handler: d.syncGetHostTime},
		{Name: "comments-create", Methods: write, VerifyJWT: true, Handler: d.commentsCreate},
		{Name: "comments-get-by-episode", Methods: read, VerifyJWT: true, Handler: d.commentsGetByEpisode},
		{Name: "comments-get-history", Methods: read, VerifyJWT: true, Handler: d.commentsGetHistory},
		{Name: "members-get-list", Methods: read, VerifyJWT: true, Handler: d.membersGetList},
		{Name: "members-update-status", Methods: write, VerifyJWT: true, Handler: d.membersUpdateStatus},
	}
}
