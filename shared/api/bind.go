package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// Bind reads the request into dst, a pointer to a struct with json tags.
//
// POST (and any method with a body): the body is JSON whatever its
// Content-Type says, and an empty body is {}. GET: the query parameters, by
// the same json names, converted to the field's JSON type. Strings are then
// trimmed, except fields tagged `trim:"false"`. Unknown fields are ignored.
func Bind(c echo.Context, dst any) error {
	req := c.Request()
	var body []byte
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		b, err := queryAsJSON(req.URL.Query(), dst)
		if err != nil {
			return err
		}
		body = b
	} else {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return Errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "request body exceeds %d bytes", tooLarge.Limit)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Errorf(http.StatusRequestTimeout, CodeRequestTimeout, "the request body did not arrive in time")
			}
			return Invalid("", "could not read the request body")
		}
		body = b
	}
	if err := decodeObject(body, dst); err != nil {
		return err
	}
	trimStrings(reflect.ValueOf(dst).Elem())
	return nil
}

func decodeObject(body []byte, dst any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	if body[0] != '{' {
		if !json.Valid(body) {
			return Invalid("", "request body is not valid JSON")
		}
		return Invalid("", "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Invalid(typeErr.Field, "%s must be %s, not %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
		}
		return Invalid("", "request body is not valid JSON")
	}
	if dec.More() {
		return Invalid("", "request body must be a single JSON object")
	}
	return nil
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// queryAsJSON turns ?a=1&b=x into {"a":1,"b":"x"} using dst's field types.
func queryAsJSON(q map[string][]string, dst any) ([]byte, error) {
	t := reflect.TypeOf(dst).Elem()
	out := make(map[string]json.RawMessage, len(q))
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := jsonName(f)
		vals, ok := q[name]
		if name == "" || !ok || len(vals) == 0 {
			continue
		}
		v := vals[len(vals)-1]
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.String:
			b, _ := json.Marshal(v)
			out[name] = b
		case reflect.Bool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, Invalid(name, "%s must be a boolean, not %q", name, v)
			}
			out[name] = json.RawMessage(strconv.FormatBool(b))
		case reflect.Int, reflect.Int32, reflect.Int64, reflect.Float64, reflect.Float32:
			if _, err := strconv.ParseFloat(v, 64); err != nil || !json.Valid([]byte(v)) {
				return nil, Invalid(name, "%s must be %s, not %q", name, jsonKind(ft), v)
			}
			out[name] = json.RawMessage(v)
		}
	}
	return json.Marshal(out)
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}

func trimStrings(v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("trim") == "false" {
			continue
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.String:
			f.SetString(strings.TrimSpace(f.String()))
		case f.Kind() == reflect.Pointer && !f.IsNil() && f.Elem().Kind() == reflect.String:
			f.Elem().SetString(strings.TrimSpace(f.Elem().String()))
		}
	}
}
