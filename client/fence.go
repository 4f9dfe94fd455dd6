package client

// FenceFromToken returns the fencing number carried by a lease token from
// a dflockd server that issues fencing tokens: the first 16 of its 32 hex
// characters, read as a big-endian uint64. A later grant, of any key on
// the same server, always carries a greater number, so a resource guarded
// by the lock can reject writes from a holder whose lease has passed on.
// Tokens of 1.x servers are random and parse, but their numbers mean
// nothing. A token that is not 32 hex characters yields ErrInvalid.
func FenceFromToken(token string) (uint64, error) {
	if len(token) != 32 {
		return 0, invalid("token %q is not 32 hex characters", token)
	}
	var v uint64
	for i := 0; i < 32; i++ {
		c := token[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, invalid("token %q is not hexadecimal", token)
		}
		if i < 16 {
			v = v<<4 | uint64(d)
		}
	}
	return v, nil
}
