package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dflockd/dflockd/client"
)

// Exit statuses of dflockctl's own outcomes. Otherwise lock and semaphore
// exit with the status of the command they ran.
const (
	exitOK          = 0
	exitNotAcquired = 1   // the lock or slot was not acquired in time
	exitUsage       = 2   // bad command line or configuration
	exitFailure     = 3   // server or connection error
	exitLeaseLost   = 4   // the lease was lost while the command ran
	exitCannotRun   = 126 // the command exists but could not be started
	exitNotFound    = 127 // the command was not found
	exitSignalBase  = 128 // + N: killed or interrupted by signal N
)

// run is the whole program: it parses args and the environment (read
// through getenv), runs the selected command and returns the exit status.
// ctx bounds everything; when it ends, lock and semaphore stop their
// command as they do when the lease is lost.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cli, err := parse(args, getenv, stdout, stderr)
	if err != nil {
		if ex, ok := errors.AsType[*exitRequest](err); ok {
			return ex.code
		}
		fmt.Fprintln(stderr, "dflockctl: "+oneLine(err))
		if _, ok := errors.AsType[*usageError](err); !ok {
			return exitFailure
		}
		return exitUsage
	}
	opts, err := cli.clientOptions()
	if err != nil {
		return report(stderr, err)
	}
	switch cli.command {
	case "lock":
		c := &cli.Lock
		return hold(ctx, holdSpec{kind: "lock", key: c.Key, command: c.Command, flags: c.holdFlags},
			cli.Server, opts, stdout, stderr)
	case "semaphore":
		c := &cli.Semaphore
		return hold(ctx, holdSpec{kind: "semaphore", key: c.Key, limit: c.Limit, command: c.Command, flags: c.holdFlags},
			cli.Server, opts, stdout, stderr)
	}
	// The other commands end quietly on SIGINT or SIGTERM.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := cli.Server[0]
	switch cli.command {
	case "signal":
		err = cli.Signal.run(ctx, addr, opts, stdout)
	case "listen":
		err = cli.Listen.run(ctx, addr, opts, stdout, stderr)
	case "stats":
		err = cli.Stats.run(ctx, addr, opts, stdout)
	default:
		err = fmt.Errorf("unknown command %q", cli.command)
	}
	if err != nil {
		return report(stderr, err)
	}
	return exitOK
}

// report prints err and returns its exit status: exitUsage for usage
// errors and arguments the client rejected, exitFailure otherwise.
func report(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "dflockctl: "+oneLine(err))
	return exitCode(err)
}

// exitCode maps an error to dflockctl's exit status.
func exitCode(err error) int {
	if _, ok := errors.AsType[*usageError](err); ok || errors.Is(err, client.ErrInvalid) {
		return exitUsage
	}
	return exitFailure
}

// oneLine collapses whitespace so that an error prints on one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
