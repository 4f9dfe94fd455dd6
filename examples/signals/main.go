// Command signals runs a queue group of workers fed by a publisher. The
// workers listen on "jobs.>" as members of one queue group, so each job
// signal goes to exactly one of them (round-robin); an auditor listening
// on the same pattern without a group sees every job.
//
// Run a server, then the example, from the repository root:
//
//	go run ./cmd/dflockd
//	go run ./examples/signals -addr 127.0.0.1:6388 -workers 3 -jobs 9
//
// Flags: -addr (server address), -workers (group members), -jobs (signals
// to publish), -group (queue group name).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dflockd/dflockd/client"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "signals:", err)
		os.Exit(1)
	}
}

// auditor is the delivery.who of the auditor.
const auditor = -1

// delivery is one signal received by a worker or the auditor.
type delivery struct {
	who     int
	payload string
}

// run is the example; main only wires it to the process.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("signals", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6388", "server address (host:port or an endpoint URL)")
	workers := fs.Int("workers", 3, "number of workers in the queue group")
	jobs := fs.Int("jobs", 9, "number of jobs to publish")
	group := fs.String("group", "builders", "queue group name")
	if err := fs.Parse(args); err != nil {
		return err
	}

	// Every listener has a connection of its own and a goroutine that
	// forwards what it receives.
	var (
		conns []*client.SignalConn
		wg    sync.WaitGroup
	)
	received := make(chan delivery)
	stop := make(chan struct{})
	defer func() {
		close(stop)
		for _, sc := range conns {
			sc.Close() // closes its Signals channel
		}
		wg.Wait()
	}()
	listen := func(who int, opts ...client.ListenOption) error {
		sc, err := client.NewSignalConn(ctx, *addr, client.Options{})
		if err != nil {
			return err
		}
		conns = append(conns, sc)
		// Listen returns once the server has registered the subscription.
		if err := sc.Listen(ctx, "jobs.>", opts...); err != nil {
			return err
		}
		wg.Go(func() {
			for sig := range sc.Signals() {
				select {
				case received <- delivery{who, sig.Payload}:
				case <-stop:
					return
				}
			}
		})
		return nil
	}
	for i := range *workers {
		if err := listen(i, client.WithGroup(*group)); err != nil {
			return fmt.Errorf("worker %d: %w", i, err)
		}
	}
	if err := listen(auditor); err != nil {
		return fmt.Errorf("auditor: %w", err)
	}

	pub, err := client.Dial(ctx, *addr, client.Options{})
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer pub.Close()
	for j := range *jobs {
		n, err := pub.Emit(ctx, "jobs.build", fmt.Sprintf("job-%d", j))
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if n != 2 {
			return fmt.Errorf("job-%d reached %d receivers; want 2 (one worker, the auditor)", j, n)
		}
	}
	fmt.Fprintf(stdout, "published %d jobs on jobs.build; each reached one worker and the auditor\n", *jobs)

	// Collect every delivery.
	handled := make([][]string, *workers)
	byJob := map[string]int{}
	audited := 0
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for got := 0; got < 2*(*jobs); got++ { // one worker and the auditor per job
		select {
		case d := <-received:
			if d.who == auditor {
				audited++
				continue
			}
			handled[d.who] = append(handled[d.who], d.payload)
			byJob[d.payload]++
		case <-timeout.C:
			return errors.New("timed out waiting for the jobs to arrive")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i, h := range handled {
		fmt.Fprintf(stdout, "worker %d handled %d jobs: %s\n", i, len(h), strings.Join(h, " "))
	}
	fmt.Fprintf(stdout, "the auditor saw %d jobs\n", audited)
	for j := range *jobs {
		if n := byJob[fmt.Sprintf("job-%d", j)]; n != 1 {
			return fmt.Errorf("job-%d was handled %d times; want once", j, n)
		}
	}
	if audited != *jobs {
		return fmt.Errorf("the auditor saw %d jobs; want %d", audited, *jobs)
	}
	return nil
}
