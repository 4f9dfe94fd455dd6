// Command twophase shows two-phase locking: Enqueue joins a lock's queue
// without blocking, so a client can keep its place in line while it gets
// ready, and Wait then blocks until the lock is granted. The queue is
// first come, first served: a client that enqueued earlier goes first,
// even if another started waiting before it.
//
// Run a server, then the example, from the repository root:
//
//	go run ./cmd/dflockd
//	go run ./examples/twophase -addr 127.0.0.1:6388
//
// Flags: -addr (server address), -key (lock key), -prep (how long the
// second client prepares before it waits).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dflockd/dflockd/client"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "twophase:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("twophase", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6388", "server address (host:port or an endpoint URL)")
	key := fs.String("key", "examples.twophase", "lock key")
	prep := fs.Duration("prep", 200*time.Millisecond, "how long the second client prepares before it waits")
	if err := fs.Parse(args); err != nil {
		return err
	}
	newLock := func() *client.Lock { return &client.Lock{Key: *key, Servers: []string{*addr}} }
	first, second, third := newLock(), newLock(), newLock()
	defer first.Close()
	defer second.Close()
	defer third.Close()

	// Enqueue on a free lock acquires it at once.
	status, err := first.Enqueue(ctx)
	if err != nil {
		return fmt.Errorf("first: enqueue: %w", err)
	}
	fmt.Fprintln(stdout, "first:  enqueue ->", status)
	if err := wait(ctx, first, 10*time.Second); err != nil {
		return fmt.Errorf("first: %w", err)
	}

	// The others join the queue; neither call blocks.
	for _, c := range []struct {
		name string
		l    *client.Lock
	}{{"second", second}, {"third", third}} {
		status, err := c.l.Enqueue(ctx)
		if err != nil {
			return fmt.Errorf("%s: enqueue: %w", c.name, err)
		}
		fmt.Fprintf(stdout, "%-7s enqueue -> %s\n", c.name+":", status)
	}

	// The third starts waiting right away...
	thirdDone := make(chan error, 1)
	go func() { thirdDone <- wait(ctx, third, 30*time.Second) }()
	// ...while the second prepares; the first then finishes.
	time.Sleep(*prep)
	if err := first.Release(ctx); err != nil {
		return fmt.Errorf("first: release: %w", err)
	}
	fmt.Fprintln(stdout, "first:  released")

	// The second enqueued before the third, so it is next in line.
	if err := wait(ctx, second, 10*time.Second); err != nil {
		return fmt.Errorf("second: %w", err)
	}
	select {
	case err := <-thirdDone:
		return fmt.Errorf("the third got the lock before the second (%v)", err)
	default:
	}
	fmt.Fprintln(stdout, "second: holds the lock (it enqueued before the third)")
	if err := second.Release(ctx); err != nil {
		return fmt.Errorf("second: release: %w", err)
	}
	fmt.Fprintln(stdout, "second: released")

	if err := <-thirdDone; err != nil {
		return fmt.Errorf("third: %w", err)
	}
	fmt.Fprintln(stdout, "third:  holds the lock")
	if err := third.Release(ctx); err != nil {
		return fmt.Errorf("third: release: %w", err)
	}
	fmt.Fprintln(stdout, "third:  released")
	return nil
}

// wait is Lock.Wait with a timeout reported as an error.
func wait(ctx context.Context, l *client.Lock, timeout time.Duration) error {
	ok, err := l.Wait(ctx, timeout)
	if err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if !ok {
		return fmt.Errorf("wait: not granted within %v", timeout)
	}
	return nil
}
