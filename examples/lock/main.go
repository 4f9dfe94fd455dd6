// Command lock takes a distributed lock, works while holding it and
// releases it. While it holds the lock, a second client trying the same
// key is turned away; if the lease were lost, the work would stop.
//
// Run a server, then the example, from the repository root:
//
//	go run ./cmd/dflockd
//	go run ./examples/lock -addr 127.0.0.1:6388
//
// Flags: -addr (server address), -key (lock key), -work (how long to hold
// the lock).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dflockd/dflockd/client"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lock:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6388", "server address (host:port or an endpoint URL such as unix:///tmp/dflockd.sock)")
	key := fs.String("key", "examples.lock", "lock key")
	work := fs.Duration("work", time.Second, "how long to hold the lock")
	if err := fs.Parse(args); err != nil {
		return err
	}

	l := &client.Lock{Key: *key, Servers: []string{*addr}, AcquireTimeout: 10 * time.Second}
	ok, err := l.Acquire(ctx) // from now on the lease renews itself
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	if !ok {
		return fmt.Errorf("lock %q is still held by someone else after 10s", *key)
	}
	defer l.Close() // in case of an early return: the server then releases
	// Tokens grow with every grant, so they double as fencing tokens.
	fence, err := client.FenceFromToken(l.Token())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "acquired %q (fencing token %d)\n", *key, fence)

	// Meanwhile, another client only trying once does not get it.
	other := &client.Lock{Key: *key, Servers: []string{*addr}, AcquireTimeout: -1}
	if got, err := other.Acquire(ctx); err != nil {
		return fmt.Errorf("second acquire: %w", err)
	} else if got {
		other.Release(ctx)
		return errors.New("a second client got the lock too")
	}
	fmt.Fprintln(stdout, "a second client is turned away")

	// Work, but stop at once if the lease is lost.
	select {
	case <-time.After(*work):
		fmt.Fprintln(stdout, "work done")
	case <-l.Lost():
		return errors.New("lease lost: work abandoned")
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := l.Release(ctx); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	fmt.Fprintln(stdout, "released")
	return nil
}
