package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A notification's payload is "<node> <counter> " followed by items, each
// "<kind><length>:<data>" with the length in bytes:
//
//	T  the message, as text
//	B  the message in base64 (binary, or text the server cannot carry)
//	R  the id of an animesync.realtime_relay row holding the message
//
// Several small messages share one notification, which saves round trips
// and commits under bursts.
const (
	itemText   byte = 'T'
	itemBase64 byte = 'B'
	itemRow    byte = 'R'
	// itemOverhead bounds the kind, length and colon of an item: lengths
	// stay below notifyLimit, four digits.
	itemOverhead = 6
)

// inlineItem is how data fits in a notification: as text when the server
// accepts it as such (no NUL, valid in its encoding), else in base64; kind
// 0 when it cannot fit in one.
func inlineItem(data []byte, serverUTF8 bool) (byte, []byte) {
	if len(data) > notifyLimit {
		return 0, nil
	}
	if textSafe(data, serverUTF8) {
		return itemText, data
	}
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(data)))
	base64.StdEncoding.Encode(enc, data)
	return itemBase64, enc
}

func textSafe(data []byte, serverUTF8 bool) bool {
	if bytes.IndexByte(data, 0) >= 0 {
		return false
	}
	if serverUTF8 {
		return utf8.Valid(data)
	}
	for _, c := range data {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("base64 item: %w", err)
	}
	return b, nil
}

// packer builds one notification payload.
type packer struct {
	buf []byte
	n   int // items
}

func (p *packer) reset(header string) {
	p.buf = append(p.buf[:0], header...)
	p.n = 0
}

func (p *packer) fits(item []byte) bool {
	return len(p.buf)+itemOverhead+len(item) <= notifyLimit
}

func (p *packer) add(kind byte, item []byte) {
	p.buf = append(p.buf, kind)
	p.buf = strconv.AppendInt(p.buf, int64(len(item)), 10)
	p.buf = append(p.buf, ':')
	p.buf = append(p.buf, item...)
	p.n++
}

func (p *packer) payload() string { return string(p.buf) }

var errShort = errors.New("truncated item")

// parseHeader splits a payload into its sender, counter and items.
func parseHeader(payload string) (node string, counter uint64, items string, err error) {
	node, rest, ok := strings.Cut(payload, " ")
	if !ok || node == "" {
		return "", 0, "", errors.New("no node in the header")
	}
	num, items, ok := strings.Cut(rest, " ")
	if !ok {
		return "", 0, "", errors.New("no counter in the header")
	}
	counter, err = strconv.ParseUint(num, 10, 64)
	if err != nil {
		return "", 0, "", fmt.Errorf("counter: %w", err)
	}
	return node, counter, items, nil
}

// nextItem takes the first item off items.
func nextItem(items string) (kind byte, item, rest string, err error) {
	if len(items) < 3 {
		return 0, "", "", errShort
	}
	kind = items[0]
	num, rest, ok := strings.Cut(items[1:], ":")
	if !ok {
		return 0, "", "", errShort
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > len(rest) {
		return 0, "", "", errShort
	}
	return kind, rest[:n], rest[n:], nil
}
