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
	// Aliases are extra paths under /functions/v1/ that reach the same handler.
	Aliases []string
	// Request is the zero value of the function's request type: the fields
	// it binds from the body or query (docs/API_REFERENCE.md documents each).
	Request any
	Handler echo.HandlerFunc
	// verify_jwt is not here: supabase/config.toml is its one home, with
	// Supabase's default (true) for a function it does not list.
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
		{Name: "rooms-create", Methods: write, Aliases: []string{"rooms/create-realtime"}, Request: roomsCreateRequest{}, Handler: d.roomsCreate},
		{Name: "rooms-join", Methods: write, Request: roomsJoinRequest{}, Handler: d.roomsJoin},
		{Name: "rooms-leave", Methods: write, Request: roomMemberRequest{}, Handler: d.roomsLeave},
		{Name: "rooms-delete", Methods: write, Request: roomMemberRequest{}, Handler: d.roomsDelete},
		{Name: "rooms-list-public", Methods: read, Request: roomsListPublicRequest{}, Handler: d.roomsListPublic},
		{Name: "sync-control", Methods: write, Aliases: []string{"sync/control"}, Request: syncControlRequest{}, Handler: d.syncControl},
		{Name: "sync-get-host-time", Methods: read, Request: syncGetHostTimeRequest{}, Handler: d.syncGetHostTime},
		{Name: "comments-create", Methods: write, Request: commentsCreateRequest{}, Handler: d.commentsCreate},
		{Name: "comments-get-by-episode", Methods: read, Request: commentsGetByEpisodeRequest{}, Handler: d.commentsGetByEpisode},
		{Name: "comments-get-history", Methods: read, Request: commentsGetHistoryRequest{}, Handler: d.commentsGetHistory},
		{Name: "members-get-list", Methods: read, Request: membersGetListRequest{}, Handler: d.membersGetList},
		{Name: "members-update-status", Methods: write, Request: membersUpdateStatusRequest{}, Handler: d.membersUpdateStatus},
	}
}
