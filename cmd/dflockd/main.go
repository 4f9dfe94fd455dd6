// Command dflockd runs the dflockd lock server.
//
// Every setting is a flag with an environment variable behind it; an
// explicitly given flag beats the variable, which beats the built-in
// default. Run `dflockd --help` for the list.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
