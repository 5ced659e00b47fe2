package functions

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"math/big"
)

const roomIDAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newRoomID is 10 characters of [a-z0-9] from the system's CSPRNG
// (about 51 bits): unguessable, so a private room's id reveals nothing.
func newRoomID() string {
	b := make([]byte, 10)
	for i := range b {
		b[i] = roomIDAlphabet[randomInt(len(roomIDAlphabet))]
	}
	return string(b)
}

// newAccessKey is a uniformly random 6-digit key, leading zeros kept.
func newAccessKey() string {
	b := make([]byte, 6)
	for i := range b {
		b[i] = byte('0' + randomInt(10))
	}
	return string(b)
}

func randomInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		// crypto/rand never fails on supported platforms; a broken entropy
		// source must not produce guessable ids.
		panic("crypto/rand: " + err.Error())
	}
	return int(v.Int64())
}

// accessKeyHash is what the database stores instead of the key.
func accessKeyHash(roomID, key string) string {
	sum := sha256.Sum256([]byte(roomID + ":" + key))
	return hex.EncodeToString(sum[:])
}

func accessKeyMatches(roomID, key, storedHash string) bool {
	return subtle.ConstantTimeCompare([]byte(accessKeyHash(roomID, key)), []byte(storedHash)) == 1
}
