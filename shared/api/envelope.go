package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Success is the body of every 2xx answer.
type Success struct {
	Success bool `json:"success"`
	Data    any  `json:"data"`
}

// Failure is the body of every function error.
type Failure struct {
	Success bool        `json:"success"`
	Error   FailureBody `json:"error"`
}

// FailureBody is the "error" member of a Failure.
type FailureBody struct {
	Code    Code           `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// OK writes 200 with data in the success envelope.
func OK(c echo.Context, data any) error {
	return c.JSON(http.StatusOK, Success{Success: true, Data: data})
}

// Created writes 201 with data in the success envelope.
func Created(c echo.Context, data any) error {
	return c.JSON(http.StatusCreated, Success{Success: true, Data: data})
}

// FailureOf renders e as the error envelope.
func FailureOf(e *Error) Failure {
	details := e.Details
	if details == nil {
		details = map[string]any{}
	}
	return Failure{Error: FailureBody{Code: e.Code, Message: e.Message, Details: details}}
}

// Pagination describes one page of a list.
type Pagination struct {
	Limit   int  `json:"limit"`
	Offset  int  `json:"offset"`
	Total   int  `json:"total"`
	HasMore bool `json:"has_more"`
}

// Page describes the page of n items read at offset with limit, out of
// total matching items.
func Page(limit, offset, total, n int) Pagination {
	return Pagination{Limit: limit, Offset: offset, Total: total, HasMore: offset+n < total}
}
