// Command dflockctl is the command-line client of dflockd.
//
// It runs a command while holding a lock or a semaphore slot, as flock(1),
// etcdctl lock or consul lock do, and sends, receives and inspects
// signals and server state:
//
//	dflockctl lock KEY [--timeout T] [--ttl T] -- COMMAND [ARG...]
//	dflockctl semaphore KEY LIMIT [--timeout T] [--ttl T] -- COMMAND [ARG...]
//	dflockctl signal CHANNEL PAYLOAD...
//	dflockctl listen PATTERN [--group G] [--count N]
//	dflockctl stats [--json]
//
// Global flags (before or after the command name) choose the server:
// --server (DFLOCKD_SERVER, default 127.0.0.1:6388; "host:port",
// "tls://host:port", "unix:///path.sock" or "quic://host:port"),
// --auth-token or --auth-token-file, and the TLS client settings
// --tls-ca, --tls-cert, --tls-key and --tls-server-name.
//
// # Exit status
//
//	0        success (lock, semaphore: COMMAND exited 0)
//	1        the lock or slot was not acquired within --timeout
//	2        usage or configuration error
//	3        server or connection error
//	4        the lease was lost while COMMAND ran; COMMAND was stopped
//	126      COMMAND could not be started
//	127      COMMAND was not found
//	128+N    COMMAND was killed by signal N, or dflockctl was interrupted
//	         by signal N while waiting for the lock
//	other    COMMAND's own exit status
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
