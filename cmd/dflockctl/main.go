// Command dflockctl is the command-line client of dflockd.
//
// It runs a command while holding a lock or a semaphore slot, as flock(1),
// etcdctl lock or consul lock do, or holds one until interrupted, and
// sends, receives and inspects signals and server state:
//
//	dflockctl lock KEY [--timeout T] [--ttl T] [-E N] [-- COMMAND [ARG...] | -c STRING]
//	dflockctl semaphore KEY LIMIT [--timeout T] [--ttl T] [-E N] [-- COMMAND [ARG...] | -c STRING]
//	dflockctl signal [--min-receivers N] CHANNEL PAYLOAD...|-
//	dflockctl listen PATTERN [--group G] [--count N] [--json]
//	dflockctl stats [--json]
//	dflockctl top [--interval T] [--once [--json]] [--count N] [--keys N]
//	dflockctl completion bash|zsh|fish
//
// Global flags (before or after the command name) choose the server:
// --server (DFLOCKD_SERVER, default 127.0.0.1:6388; "host[:port]" with
// port 6388 by default, a socket path such as /run/dflockd.sock or
// ./d.sock, or a URL "tcp://", "tls://host:port", "unix:///path.sock",
// "quic://host:port"), --auth-token or --auth-token-file, the TLS client
// settings --tls-ca, --tls-cert, --tls-key and --tls-server-name, and the
// timeouts --dial-timeout (connecting, default 5s) and --command-timeout
// (each answer, default 10s; a lock wait may take --timeout plus this).
// Durations sent to the server (--timeout, --ttl) are whole seconds: 500ms
// or 1.5s are refused, not rounded. --version prints the version.
//
// # Exit status
//
//	0        success (lock, semaphore: COMMAND exited 0, or the hold ended
//	         with SIGINT/SIGTERM)
//	1        the lock or slot was not acquired within --timeout (change it
//	         with --conflict-exit-code); signal: fewer receivers than
//	         --min-receivers
//	2        usage or configuration error
//	3        server or connection error (including "server shutting down")
//	4        the lease was lost; COMMAND, if any, was stopped
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
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
