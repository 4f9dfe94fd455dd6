// Command unix uses dflockd as a sidecar on a Unix socket: processes on
// the same host coordinate without any TCP port, and the socket's file
// permissions (plus, optionally, the server's --unix-allow-uid and
// --unix-allow-gid lists) decide who may connect. Here two instances of
// a cron job start at the same moment; the lock lets one run and the
// other skip.
//
// Run a server on a socket, then the example, from the repository root:
//
//	go run ./cmd/dflockd --listen unix:///tmp/dflockd.sock
//	go run ./examples/unix -socket /tmp/dflockd.sock
//
// Flags: -socket (path of the server's socket), -job (name of the job).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dflockd/dflockd/client"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "unix:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("unix", flag.ContinueOnError)
	socket := fs.String("socket", "/tmp/dflockd.sock", "path of the server's Unix socket")
	job := fs.String("job", "backup", "name of the cron job")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, err := filepath.Abs(*socket)
	if err != nil {
		return err
	}
	addr := "unix://" + path // an endpoint URL selects the transport
	key := "cron." + *job

	// Both instances try once, without waiting: whoever is second skips.
	var held []*client.Lock
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i := 1; i <= 2; i++ {
		l := &client.Lock{Key: key, Servers: []string{addr}, AcquireTimeout: -1}
		ok, err := l.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("instance %d: %w", i, err)
		}
		if !ok {
			fmt.Fprintf(stdout, "instance %d: %s is already running elsewhere; skipping\n", i, *job)
			continue
		}
		held = append(held, l)
		fmt.Fprintf(stdout, "instance %d: running %s\n", i, *job)
	}
	if len(held) != 1 {
		return fmt.Errorf("%d instances ran the job; want exactly 1", len(held))
	}

	// The server's stats show who holds the lock, and how it connected.
	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	owner, err := lockOwner(st, key)
	if err != nil {
		return err
	}
	identity := owner.Identity
	if identity == "" {
		identity = "anonymous (no allow list)"
	}
	fmt.Fprintf(stdout, "%s is held by connection %d over %s, identity %s\n", key, owner.ID, owner.Transport, identity)

	if err := held[0].Release(ctx); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	held = nil
	fmt.Fprintf(stdout, "instance 1: %s done, lock released\n", *job)
	return nil
}

// lockOwner finds the client holding lock key in st.
func lockOwner(st *client.Stats, key string) (client.ClientStat, error) {
	for _, l := range st.Locks {
		if l.Key != key {
			continue
		}
		for _, c := range st.Clients {
			if c.ID == l.OwnerConnID {
				return c, nil
			}
		}
	}
	return client.ClientStat{}, errors.New("the lock's holder is not in the stats")
}
