package core

import (
	"crypto/rand"
	"sync"
	"sync/atomic"
)

// fence is a server-wide strictly increasing counter. It forms the first
// half of every token, so a later grant always has a greater token.
type fence struct {
	n atomic.Uint64
}

// randBuf is a chunk of crypto/rand output consumed eight bytes at a time.
// Chunks live in a sync.Pool so concurrent grants never share a lock.
type randBuf struct {
	b   [4096]byte
	off int
}

var randPool = sync.Pool{New: func() any { return &randBuf{off: len(randBuf{}.b)} }}

// salt returns eight random bytes.
func salt() (s [8]byte) {
	rb := randPool.Get().(*randBuf)
	if rb.off+8 > len(rb.b) {
		if _, err := rand.Read(rb.b[:]); err != nil {
			// crypto/rand.Read never fails on supported platforms (it
			// crashes the program instead); keep the check for clarity.
			panic("core: crypto/rand: " + err.Error())
		}
		rb.off = 0
	}
	copy(s[:], rb.b[rb.off:rb.off+8])
	rb.off += 8
	randPool.Put(rb)
	return s
}

// Token is a lease token: 32 lower-case hex characters, 16 for the
// big-endian fence value and 16 for random salt. It is a value type so
// that a grant allocates nothing and holders carry no pointers.
type Token [32]byte

// String returns the token's text.
func (t Token) String() string { return string(t[:]) }

// is reports whether s is the token's text, without allocating.
func (t *Token) is(s string) bool { return len(s) == len(t) && string(t[:]) == s }

// hexPairs[b] is the two lower-case hex digits of b.
var hexPairs = func() (t [256][2]byte) {
	const digits = "0123456789abcdef"
	for i := range t {
		t[i] = [2]byte{digits[i>>4], digits[i&15]}
	}
	return t
}()

// newToken returns a new token.
func (f *fence) newToken() (out Token) {
	v := f.n.Add(1)
	for i := 7; i >= 0; i-- {
		p := hexPairs[byte(v)]
		out[2*i], out[2*i+1] = p[0], p[1]
		v >>= 8
	}
	s := salt()
	for i, b := range s {
		p := hexPairs[b]
		out[16+2*i], out[16+2*i+1] = p[0], p[1]
	}
	return out
}

// FenceFromToken returns the fencing number carried by a token issued by
// this engine (the first 16 hex characters). Tokens from 1.x servers are
// random and carry no meaningful fence.
func FenceFromToken(token string) (uint64, bool) {
	if len(token) != 32 {
		return 0, false
	}
	var v uint64
	for i := 0; i < 16; i++ {
		c := token[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}
