// Command dflockd runs the dflockd lock server.
//
// Serving is the default command: `dflockd --listen tls://:6389 ...` and
// `dflockd serve ...` are the same. Every server setting is a flag with an
// environment variable behind it; an explicitly given flag beats the
// variable, which beats the built-in default. Run `dflockd --help` for the
// list. `dflockd gen-cert` writes a CA (kept on later runs), a server
// certificate and a client certificate for TLS, mutual TLS and QUIC into
// certs/.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}
