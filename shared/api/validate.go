package api

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Check validates a request's fields in order and keeps the first failure,
// so the client is told about one named field at a time.
type Check struct {
	err *Error
}

// Err is the first failure, or nil.
func (c *Check) Err() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

func (c *Check) fail(field, reason string) {
	if c.err == nil {
		c.err = Validation(field, reason)
	}
}

// Failed reports whether a check has failed already.
func (c *Check) Failed() bool { return c.err != nil }

// Text checks a trimmed single-line string of min..max characters. With
// min 0 an empty string is accepted (an optional field).
func (c *Check) Text(field, s string, min, max int) {
	c.text(field, s, min, max, false)
}

// MultilineText is Text that also allows newlines and tabs.
func (c *Check) MultilineText(field, s string, min, max int) {
	c.text(field, s, min, max, true)
}

func (c *Check) text(field, s string, min, max int, multiline bool) {
	if s == "" {
		if min > 0 {
			c.fail(field, "is required")
		}
		return
	}
	if !utf8.ValidString(s) {
		c.fail(field, "must be valid UTF-8")
		return
	}
	if n := utf8.RuneCountInString(s); n < min || n > max {
		c.fail(field, fmt.Sprintf("must be %d to %d characters, got %d", min, max, n))
		return
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			c.fail(field, "must not contain control characters")
			return
		}
	}
}

// UserID checks 1–128 characters of [A-Za-z0-9_.:@-].
func (c *Check) UserID(field, s string) {
	if s == "" {
		c.fail(field, "is required")
		return
	}
	if len(s) > 128 {
		c.fail(field, "must be at most 128 characters")
		return
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:@-", r))) {
			c.fail(field, "may contain only letters, digits and _ . : @ -")
			return
		}
	}
}

// RoomID checks the shape of a room id: 10 characters of [a-z0-9].
func (c *Check) RoomID(field, s string) {
	if s == "" {
		c.fail(field, "is required")
		return
	}
	if len(s) != 10 || strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) >= 0 {
		c.fail(field, "must be 10 characters of a-z and 0-9")
	}
}

// HTTPURL checks an absolute http or https URL of at most max bytes.
func (c *Check) HTTPURL(field, s string, max int, required bool) {
	if s == "" {
		if required {
			c.fail(field, "is required")
		}
		return
	}
	if len(s) > max {
		c.fail(field, fmt.Sprintf("must be at most %d characters", max))
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s, " \t\r\n") {
		c.fail(field, "must be an http or https URL")
	}
}

// Int checks an integer in [min, max]; nil is an error only if required.
func (c *Check) Int(field string, v *int, min, max int, required bool) {
	if v == nil {
		if required {
			c.fail(field, "is required")
		}
		return
	}
	if *v < min || *v > max {
		c.fail(field, fmt.Sprintf("must be between %d and %d", min, max))
	}
}

// Resolution is the finest difference a number field keeps: a magnitude
// below it (subnormals such as 5e-324 included) is stored as 0, and so is
// -0. Seconds and milliseconds need nothing finer, and values that small
// underflow in arithmetic (5e-324 / 30 fails in PostgreSQL).
const Resolution = 1e-6

// Number checks a finite number in [min, max] and normalises it in place
// (see Resolution); nil is an error only if required.
func (c *Check) Number(field string, v *float64, min, max float64, required bool) {
	if v == nil {
		if required {
			c.fail(field, "is required")
		}
		return
	}
	if math.IsNaN(*v) || math.IsInf(*v, 0) || *v < min || *v > max {
		c.fail(field, fmt.Sprintf("must be a number between %g and %g", min, max))
		return
	}
	if math.Abs(*v) < Resolution {
		*v = 0 // also turns -0 into 0
	}
}

// OneOf checks that a non-empty s is one of allowed.
func (c *Check) OneOf(field, s string, allowed ...string) {
	if s == "" {
		return
	}
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	c.fail(field, "must be one of "+strings.Join(allowed, ", "))
}

// Digits checks that a non-empty s is exactly n decimal digits.
func (c *Check) Digits(field, s string, n int) {
	if s == "" {
		return
	}
	if len(s) != n || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		c.fail(field, fmt.Sprintf("must be %d digits", n))
	}
}
