package functions

import (
	"context"
	"net/http"

	"github.com/animesync/animesync/shared/api"
	"github.com/animesync/animesync/shared/auth"
)

// proof is what the caller's credential proves about the user it acts as.
type proof int

const (
	// unproven: no credential that names a member (no key, the anon or
	// publishable key). The platform's open contract takes the body's word.
	unproven proof = iota
	// proven: a signed-in session or this room's member_token naming the
	// user, or the service role, which acts for anyone.
	proven
	// otherRoom: the member_token of a different room.
	otherRoom
)

// identify applies API.md's identity rules to a request that names its
// caller (userID, in field) and acts in roomID ("" for none). It returns
// the user the request acts as and what the credential proves.
//
// A signed-in user's token (role authenticated) fixes the identity to its
// sub in every room; a member_token does so in its own room. userID then
// defaults to that sub and may not differ from it (403 IDENTITY_MISMATCH).
// Both hold in every identity mode: a client that adopted the member_token
// early sees the mistakes member mode would refuse.
func identify(claims *auth.Claims, field, userID, roomID string) (string, proof, error) {
	var bound string
	switch {
	case claims.IsUser():
		bound = claims.Subject
	case claims.IsMemberToken() && roomID != "":
		if claims.RoomID != roomID {
			return userID, otherRoom, nil
		}
		bound = claims.Subject
	case claims != nil && claims.Role == auth.RoleServiceRole:
		return userID, proven, nil
	default:
		return userID, unproven, nil
	}
	if userID == "" {
		return bound, proven, nil
	}
	if userID != bound {
		what := "the signed-in user"
		if !claims.IsUser() {
			what = "the member_token's user"
		}
		return "", unproven, api.Errorf(http.StatusForbidden, api.CodeIdentityMismatch,
			"%s %q does not match %s", field, userID, what)
	}
	return userID, proven, nil
}

// requireMember is the member identity mode's rule for a call that acts as
// userID in roomID: the caller must have proven it is that member.
func requireMember(ctx context.Context, p proof, roomID, userID string) error {
	switch p {
	case proven:
		return nil
	case otherRoom:
		e := api.Errorf(http.StatusForbidden, api.CodeWrongRoomToken,
			"the member_token is for room %s, not room %s", auth.FromContext(ctx).RoomID, roomID)
		e.Details = map[string]any{"room_id": roomID}
		return e
	}
	if refused := auth.RefusedFrom(ctx); refused != nil {
		reason := "did not verify"
		if auth.IsExpired(refused) {
			reason = "has expired"
		}
		return api.Errorf(http.StatusUnauthorized, api.CodeMemberTokenInvalid,
			"the bearer token %s: re-join room %s for a fresh member_token, or sign in", reason, roomID).WithCause(refused)
	}
	return api.Errorf(http.StatusUnauthorized, api.CodeMemberTokenRequired,
		"acting as %q in room %s needs Authorization: Bearer <member_token> (from rooms-join or rooms-create) or a signed-in session",
		userID, roomID)
}
