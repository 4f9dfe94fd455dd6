package transport

import (
	"fmt"
	"net"
	"syscall"
)

// peerCred reads SO_PEERCRED from c's socket.
func peerCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("transport: peer credentials: %w", err)
	}
	var (
		uc   *syscall.Ucred
		gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		uc, gerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("transport: peer credentials: %w", err)
	}
	if gerr != nil {
		return Cred{}, fmt.Errorf("transport: peer credentials: SO_PEERCRED: %w", gerr)
	}
	return Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}
