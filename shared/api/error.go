// Package api is the functions' wire contract: the success and error
// envelopes, the stable error codes, request binding and validation.
package api

import (
	"fmt"
	"net/http"
	"strconv"
)

// Code is a stable, documented error code.
type Code string

// The error codes of API.md. Clients switch on these; never rename one.
const (
	CodeInvalidRequest   Code = "INVALID_REQUEST"
	CodeValidation       Code = "VALIDATION_ERROR"
	CodeNotHost          Code = "NOT_HOST"
	CodeNotAMember       Code = "NOT_A_MEMBER"
	CodeInvalidAccessKey Code = "INVALID_ACCESS_KEY"
	CodeIdentityMismatch Code = "IDENTITY_MISMATCH"
	CodeRoomNotFound     Code = "ROOM_NOT_FOUND"
	CodeCommentNotFound  Code = "COMMENT_NOT_FOUND"
	CodeFunctionNotFound Code = "FUNCTION_NOT_FOUND"
	CodeMethodNotAllowed Code = "METHOD_NOT_ALLOWED"
	CodeRoomFull         Code = "ROOM_FULL"
	CodeConflict         Code = "CONFLICT"
	CodePayloadTooLarge  Code = "PAYLOAD_TOO_LARGE"
	CodeRequestTimeout   Code = "REQUEST_TIMEOUT"
	CodeRateLimited      Code = "RATE_LIMITED"
	CodeTooManyAttempts  Code = "TOO_MANY_ATTEMPTS"
	CodeInternal         Code = "INTERNAL_ERROR"
	CodeUnavailable      Code = "UNAVAILABLE"

	// Member identity mode (ANIMESYNC_IDENTITY=member): the caller of a
	// room-scoped function gave no proof (401), a credential that did not
	// verify (401), or the member_token of another room (403).
	CodeMemberTokenRequired Code = "MEMBER_TOKEN_REQUIRED"
	CodeMemberTokenInvalid  Code = "MEMBER_TOKEN_INVALID"
	CodeWrongRoomToken      Code = "WRONG_ROOM_TOKEN"
)

// Error is the one error type handlers return for an expected failure.
// Anything else is reported as 500 INTERNAL_ERROR without its text.
type Error struct {
	Status  int
	Code    Code
	Message string
	Details map[string]any
	// RetryAfter, in whole seconds, sets the Retry-After header (429).
	RetryAfter int
	cause      error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.cause }

// WithCause records the underlying error for the log, never for the client.
func (e *Error) WithCause(err error) *Error { e.cause = err; return e }

// Errorf builds an Error.
func Errorf(status int, code Code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is a 400 INVALID_REQUEST naming the field (malformed JSON, wrong type).
func Invalid(field, format string, args ...any) *Error {
	e := Errorf(http.StatusBadRequest, CodeInvalidRequest, format, args...)
	if field != "" {
		e.Details = map[string]any{"field": field}
	}
	return e
}

// Validation is a 400 VALIDATION_ERROR with details {field, reason}.
func Validation(field, reason string) *Error {
	return &Error{
		Status:  http.StatusBadRequest,
		Code:    CodeValidation,
		Message: field + " " + reason,
		Details: map[string]any{"field": field, "reason": reason},
	}
}

// RoomNotFound is the 404 for an unknown room.
func RoomNotFound(roomID string) *Error {
	return Errorf(http.StatusNotFound, CodeRoomNotFound, "room %s does not exist", roomID)
}

// TooMany is a 429 with Retry-After. retryAfterSeconds is rounded up, at least 1.
func TooMany(code Code, retryAfterSeconds float64, format string, args ...any) *Error {
	secs := int(retryAfterSeconds)
	if float64(secs) < retryAfterSeconds {
		secs++
	}
	if secs < 1 {
		secs = 1
	}
	e := Errorf(http.StatusTooManyRequests, code, format, args...)
	e.RetryAfter = secs
	e.Details = map[string]any{"retry_after": secs}
	return e
}

// Internal hides err from the client.
func Internal(err error) *Error {
	return (&Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "an internal error occurred"}).WithCause(err)
}

// Unavailable is the 503 for a database that cannot be reached.
func Unavailable(err error) *Error {
	return (&Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the database is unavailable, try again shortly"}).WithCause(err)
}

// RetryAfterHeader is the header value for a 429, or "".
func (e *Error) RetryAfterHeader() string {
	if e.RetryAfter <= 0 {
		return ""
	}
	return strconv.Itoa(e.RetryAfter)
}
