// Command semaphore starts more workers than a semaphore has slots: each
// worker takes a slot before it works, so no more than -limit of them work
// at once, and the rest wait their turn (first come, first served).
//
// Run a server, then the example, from the repository root:
//
//	go run ./cmd/dflockd
//	go run ./examples/semaphore -addr 127.0.0.1:6388 -limit 2 -workers 5
//
// Flags: -addr (server address), -key (semaphore key), -limit (slots),
// -workers (how many workers), -work (how long each works).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dflockd/dflockd/client"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "semaphore:", err)
		os.Exit(1)
	}
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("semaphore", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6388", "server address (host:port or an endpoint URL)")
	key := fs.String("key", "examples.semaphore", "semaphore key")
	limit := fs.Int("limit", 2, "number of slots")
	workers := fs.Int("workers", 5, "number of workers")
	work := fs.Duration("work", 300*time.Millisecond, "how long each worker works")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var (
		mu            sync.Mutex // guards busy, maxBusy and output
		busy, maxBusy int
		wg            sync.WaitGroup
	)
	errs := make([]error, *workers)
	for i := range *workers {
		wg.Go(func() {
			s := &client.Semaphore{Key: *key, Limit: *limit, Servers: []string{*addr}, AcquireTimeout: time.Minute}
			ok, err := s.Acquire(ctx)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("worker %d: %w", i, err)
				return
			case !ok:
				errs[i] = fmt.Errorf("worker %d: no slot within a minute", i)
				return
			}
			mu.Lock()
			busy++
			maxBusy = max(maxBusy, busy)
			fmt.Fprintf(stdout, "worker %d: working (%d of %d slots in use)\n", i, busy, *limit)
			mu.Unlock()

			time.Sleep(*work)

			mu.Lock()
			busy-- // before the slot is given back
			mu.Unlock()
			if err := s.Release(ctx); err != nil {
				errs[i] = fmt.Errorf("worker %d: release: %w", i, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if maxBusy > *limit {
		return fmt.Errorf("%d workers worked at once; the limit is %d", maxBusy, *limit)
	}
	fmt.Fprintf(stdout, "all %d workers done; at most %d worked at once (limit %d)\n", *workers, maxBusy, *limit)
	return nil
}
