//go:build !linux

package transport

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

// peerCred is not implemented on this system; the error wraps
// errors.ErrUnsupported.
func peerCred(*net.UnixConn) (Cred, error) {
	return Cred{}, fmt.Errorf("transport: peer credentials on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
