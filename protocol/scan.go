package protocol

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// Byte-level helpers shared by the decoder and the response parser. They
// follow the semantics of strings.Fields, strings.TrimSpace and
// strconv.ParseInt(s, 10, 64), which the 1.x reference server uses, but work
// on []byte without allocating.

// asciiSpace marks the ASCII bytes for which unicode.IsSpace is true.
var asciiSpace = [utf8.RuneSelf]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

// skipSpace returns the index of the first non-whitespace rune in b at or
// after i (len(b) if there is none).
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		if c := b[i]; c < utf8.RuneSelf {
			if !asciiSpace[c] {
				return i
			}
			i++
			continue
		}
		r, w := utf8.DecodeRune(b[i:])
		if !unicode.IsSpace(r) {
			return i
		}
		i += w
	}
	return i
}

// skipField returns the index of the first whitespace rune in b at or after
// i (len(b) if there is none).
func skipField(b []byte, i int) int {
	for i < len(b) {
		if c := b[i]; c < utf8.RuneSelf {
			if asciiSpace[c] {
				return i
			}
			i++
			continue
		}
		r, w := utf8.DecodeRune(b[i:])
		if unicode.IsSpace(r) {
			return i
		}
		i += w
	}
	return i
}

// trimSpace returns b without leading and trailing whitespace.
func trimSpace(b []byte) []byte {
	b = b[skipSpace(b, 0):]
	for len(b) > 0 {
		c := b[len(b)-1]
		if c < utf8.RuneSelf {
			if !asciiSpace[c] {
				break
			}
			b = b[:len(b)-1]
			continue
		}
		r, w := utf8.DecodeLastRune(b)
		if !unicode.IsSpace(r) {
			break
		}
		b = b[:len(b)-w]
	}
	return b
}

// maxFields is the largest field count any command accepts (sl).
const maxFields = 3

// fields splits b on runs of whitespace into f and returns the number of
// fields found. It stops early and returns len(f)+1 when there are more
// fields than f can hold. Pure-ASCII input, the normal case, takes a
// table-driven loop; any other byte hands over to fieldsUnicode.
func fields(b []byte, f *[maxFields][]byte) int {
	n, start := 0, -1
	for i, c := range b {
		if c >= utf8.RuneSelf {
			return fieldsUnicode(b, f)
		}
		switch {
		case !asciiSpace[c]:
			if start < 0 {
				if n == len(f) {
					return n + 1
				}
				start = i
			}
		case start >= 0:
			f[n] = b[start:i]
			n++
			start = -1
		}
	}
	if start >= 0 {
		f[n] = b[start:]
		n++
	}
	return n
}

// fieldsUnicode is fields for input that may hold multi-byte runes.
func fieldsUnicode(b []byte, f *[maxFields][]byte) int {
	n := 0
	for i := skipSpace(b, 0); i < len(b); i = skipSpace(b, i) {
		if n == len(f) {
			return n + 1
		}
		start := i
		i = skipField(b, i)
		f[n] = b[start:i]
		n++
	}
	return n
}

// parseInt parses b as a base-10 int64 with an optional '+' or '-' sign, as
// strconv.ParseInt(string(b), 10, 64) does. ok is false for empty input,
// any non-digit and int64 overflow.
func parseInt(b []byte) (n int64, ok bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	// Accumulate the magnitude as uint64; the limit depends on the sign.
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var u uint64
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		if u > (limit-uint64(d))/10 {
			return 0, false
		}
		u = u*10 + uint64(d)
	}
	if neg {
		return -int64(u), true // -MinInt64 wraps back to MinInt64: correct
	}
	return int64(u), true
}

// validKey reports whether b is a legal key, pattern or channel: non-empty
// and free of space, TAB, CR and LF (§2.2).
func validKey(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if keyForbidden[c] {
			return false
		}
	}
	return true
}

// keyForbidden marks the bytes a key may not contain.
var keyForbidden = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// literalChannel reports whether the valid key b has no '*' or '>' and so
// may be published to.
func literalChannel(b []byte) bool {
	for _, c := range b {
		if c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// ValidKey reports whether key is a legal key, pattern or channel line:
// non-empty, at most MaxLine bytes, and free of space, TAB, CR and LF.
// Clients use it to reject keys locally before sending them.
func ValidKey(key string) bool {
	if len(key) == 0 || len(key) > MaxLine {
		return false
	}
	for i := 0; i < len(key); i++ {
		if keyForbidden[key[i]] {
			return false
		}
	}
	return true
}

// ValidChannel reports whether channel may be used with signal: a ValidKey
// without '*' or '>'.
func ValidChannel(channel string) bool {
	if !ValidKey(channel) {
		return false
	}
	for i := 0; i < len(channel); i++ {
		if c := channel[i]; c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// MaxPayload returns the largest signal payload, in bytes, that the server
// accepts on a channel of channelLen bytes: 65536 - 4 - channelLen - 1, so
// that the pushed frame "sig <channel> <payload>" fits in MaxLongLine.
func MaxPayload(channelLen int) int {
	return MaxLongLine - len("sig ") - channelLen - len(" ")
}
