package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// maxUnixPath is the longest socket path the kernel accepts: sun_path holds
// 108 bytes on Linux, one of which is the terminating NUL.
const maxUnixPath = 107

// unixProbeTimeout bounds the connect that tells a live socket from a stale
// one.
const unixProbeTimeout = time.Second

func init() { Register("unix", unixTransport{}) }

// unixTransport is a stream Unix domain socket. Addresses are absolute
// filesystem paths ("unix:///run/dflockd.sock" has the address
// "/run/dflockd.sock"). Conns implement PeerCreder.
type unixTransport struct{}

var (
	_ Transport     = unixTransport{}
	_ AddrValidator = unixTransport{}
)

// ValidateAddr implements AddrValidator: addr must be an absolute path of
// at most 107 bytes without NUL bytes.
func (unixTransport) ValidateAddr(addr string) error {
	switch {
	case addr == "":
		return errors.New("empty socket path")
	case !filepath.IsAbs(addr):
		return fmt.Errorf("socket path %q is not absolute", addr)
	case strings.IndexByte(addr, 0) >= 0:
		return fmt.Errorf("socket path %q contains a NUL byte", addr)
	case len(addr) > maxUnixPath:
		return fmt.Errorf("socket path is %d bytes, longer than the %d-byte limit of a Unix socket address", len(addr), maxUnixPath)
	}
	return nil
}

// Listen implements Transport. A socket file left at addr by a dead process
// is replaced; one that a live server still accepts on is left alone and
// the error wraps ErrAddrInUse; anything that is not a socket is never
// removed. The new socket file gets the permission opts.UnixMode (default
// 0o660) before Listen returns, and is removed when the listener is
// closed.
//
// Between bind and chmod the file briefly has the permission the umask
// allows; connecting needs write permission on it, which the usual umasks
// (022, 027, 077) deny to group and others.
func (u unixTransport) Listen(ctx context.Context, addr string, opts Options) (net.Listener, error) {
	if err := u.ValidateAddr(addr); err != nil {
		return nil, err
	}
	if err := removeStaleSocket(ctx, addr); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{}
	l, err := lc.Listen(ctx, "unix", addr)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	// We created the file, so it is ours to remove on Close.
	ul.SetUnlinkOnClose(true)
	if err := os.Chmod(addr, opts.unixMode()); err != nil {
		ul.Close()
		return nil, fmt.Errorf("transport: chmod unix socket: %w", err)
	}
	return unixListener{ul}, nil
}

// Dial implements Transport. The conn implements PeerCreder, reporting the
// server process.
func (unixTransport) Dial(ctx context.Context, addr string, _ Options) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, err
	}
	return unixConn{c.(*net.UnixConn)}, nil
}

// removeStaleSocket makes path free for a new socket. A missing path is
// fine. A socket nobody listens on (connect refused) is removed. A socket
// that accepts a connection belongs to a live server: ErrAddrInUse. Any
// other file, or a probe that fails in another way, is an error and
// nothing is removed.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("transport: unix socket path: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("transport: unix socket path %s exists and is not a socket (%s)", path, fi.Mode().Type())
	}
	probeCtx, cancel := context.WithTimeout(ctx, unixProbeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(probeCtx, "unix", path)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("%w: %s", ErrAddrInUse, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		// Stale: the process that bound it is gone.
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed since the Lstat
	case errors.Is(err, syscall.EAGAIN):
		// A full accept backlog: somebody is listening.
		return fmt.Errorf("%w: %s (accept backlog full)", ErrAddrInUse, path)
	default:
		return fmt.Errorf("transport: probe existing unix socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("transport: remove stale unix socket: %w", err)
	}
	return nil
}

// unixListener hands out unixConns.
type unixListener struct {
	*net.UnixListener
}

// Accept implements net.Listener.
func (l unixListener) Accept() (net.Conn, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return unixConn{c}, nil
}

// unixConn is a *net.UnixConn that reports its peer's credentials.
type unixConn struct {
	*net.UnixConn
}

var _ PeerCreder = unixConn{}

// PeerCred implements PeerCreder.
func (c unixConn) PeerCred() (Cred, error) { return peerCred(c.UnixConn) }
