package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/dflockd/dflockd/client"
)

// releaseTimeout bounds the release after the command has exited.
const releaseTimeout = 5 * time.Second

// pipeWaitDelay bounds how long, after the command has exited, dflockctl
// keeps copying its output when stdout or stderr is not a file (then the
// command writes to a pipe that a surviving grandchild may hold open).
const pipeWaitDelay = time.Second

// forwarded are the signals passed on to the command. While waiting for
// the lock they abort the wait instead.
var forwarded = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// holdSpec describes one lock or semaphore command.
type holdSpec struct {
	kind           string // "lock" or "semaphore"
	key            string
	limit          int // semaphore only
	command        []string
	flags          holdFlags
	commandTimeout time.Duration // for the server's answer beyond --timeout; 0 = none
}

// what names what is held in messages: a lock, or a slot of a semaphore.
func (s holdSpec) what() string {
	if s.kind == "semaphore" {
		return fmt.Sprintf("a slot of semaphore %q (limit %d)", s.key, s.limit)
	}
	return fmt.Sprintf("lock %q", s.key)
}

// argv returns the command to run: -c STRING through sh -c, else COMMAND
// and its arguments; nil means none (hold until interrupted).
func (s holdSpec) argv() []string {
	if s.flags.ShellCommand != "" {
		return []string{"sh", "-c", s.flags.ShellCommand}
	}
	return commandArgs(s.command)
}

// leaseHolder is what hold needs of client.Lock and client.Semaphore.
type leaseHolder interface {
	Acquire(ctx context.Context) (bool, error)
	Release(ctx context.Context) error
	Close() error
	Token() string
}

var (
	_ leaseHolder = (*client.Lock)(nil)
	_ leaseHolder = (*client.Semaphore)(nil)
)

// hold acquires the lock or slot of spec, runs the command while the
// client renews the lease in the background, releases it and returns the
// command's exit status (or one of dflockctl's, see main).
func hold(ctx context.Context, spec holdSpec, servers []string, opts client.Options, stdout, stderr io.Writer) int {
	// lost receives the renewal error that ends the lease. The client
	// calls OnRenewError once per acquisition, right after it closes Lost.
	lost := make(chan error, 1)
	onLost := func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	timeout := spec.flags.Timeout.acquireTimeout()
	ttl := int(spec.flags.TTL)
	var h leaseHolder
	if spec.kind == "semaphore" {
		h = &client.Semaphore{
			Key: spec.key, Limit: spec.limit, AcquireTimeout: timeout, LeaseTTL: ttl, Servers: servers,
			TLSConfig: opts.TLS, AuthToken: opts.AuthToken, Name: opts.Name, Transport: opts.Transport,
			DialTimeout: opts.DialTimeout, OnRenewError: onLost,
		}
	} else {
		h = &client.Lock{
			Key: spec.key, AcquireTimeout: timeout, LeaseTTL: ttl, Servers: servers,
			TLSConfig: opts.TLS, AuthToken: opts.AuthToken, Name: opts.Name, Transport: opts.Transport,
			DialTimeout: opts.DialTimeout, OnRenewError: onLost,
		}
	}
	defer h.Close() // a no-op after Release

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	if code, ok := acquire(ctx, h, spec, opts.DialTimeout, sigs, stderr); !ok {
		return code
	}
	argv := spec.argv()
	var (
		code    int
		lostErr error
	)
	if len(argv) == 0 {
		code, lostErr = holdUntilInterrupted(ctx, spec, h.Token(), sigs, lost, stdout, stderr)
	} else {
		code, lostErr = supervise(ctx, spec, argv, h.Token(), sigs, lost, stdout, stderr)
	}
	if lostErr != nil {
		if len(argv) > 0 {
			fmt.Fprintf(stderr, "dflockctl: %s was stopped because the lease on %s was lost\n", argv[0], spec.what())
		}
		return exitLeaseLost
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := h.Release(rctx); err != nil {
		// The connection is closed all the same, which makes the server
		// release what it held; the command's status stands.
		fmt.Fprintf(stderr, "dflockctl: warning: release %s: %s\n", spec.what(), oneLine(err))
	}
	return code
}

// acquire waits for the lock or slot. A forwarded signal aborts the wait.
// It reports whether the lease is held; if not, code is the exit status.
func acquire(ctx context.Context, h leaseHolder, spec holdSpec, dialTimeout time.Duration, sigs <-chan os.Signal, stderr io.Writer) (code int, held bool) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The server answers a wait within --timeout; beyond it, connecting
	// and the answer itself get --dial-timeout and --command-timeout.
	if !spec.flags.Timeout.forever && spec.commandTimeout > 0 {
		dial := max(dialTimeout, 0)
		late := &answerTimeout{command: spec.kind, after: dial + spec.flags.Timeout.d + spec.commandTimeout,
			detail: fmt.Sprintf("--timeout %s + --command-timeout %s", spec.flags.Timeout.d, spec.commandTimeout)}
		if dial > 0 {
			late.detail += fmt.Sprintf(" + --dial-timeout %s", dial)
		}
		var cancelT context.CancelFunc
		actx, cancelT = context.WithTimeoutCause(actx, late.after, late)
		defer cancelT()
	}
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ok, err := h.Acquire(actx)
		done <- result{ok, err}
	}()
	var (
		r   result
		sig os.Signal
	)
	select {
	case r = <-done:
	case sig = <-sigs:
		cancel()
		r = <-done
	}
	switch {
	case sig != nil:
		if r.ok { // granted just before the cancellation
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			_ = h.Release(rctx)
		}
		fmt.Fprintf(stderr, "dflockctl: %v while waiting for %s\n", sig, spec.what())
		return signalStatus(sig), false
	case r.err != nil && ctx.Err() != nil:
		fmt.Fprintf(stderr, "dflockctl: gave up waiting for %s: %v\n", spec.what(), context.Cause(ctx))
		return spec.flags.ConflictExit, false
	case r.err != nil:
		return report(stderr, fmt.Errorf("%s %s: %w", spec.kind, spec.key, r.err)), false
	case !r.ok && spec.flags.Timeout.acquireTimeout() < 0:
		fmt.Fprintf(stderr, "dflockctl: %s is not available (--timeout 0)\n", spec.what())
		return spec.flags.ConflictExit, false
	case !r.ok:
		fmt.Fprintf(stderr, "dflockctl: timed out after %s waiting for %s\n", spec.flags.Timeout.d, spec.what())
		return spec.flags.ConflictExit, false
	}
	return exitOK, true
}

// holdUntilInterrupted keeps the lease, with no command, until SIGINT or
// SIGTERM (or SIGHUP) arrives or ctx ends (status 0; the caller
// releases), or the lease is lost (it returns the renewal error).
func holdUntilInterrupted(ctx context.Context, spec holdSpec, token string, sigs <-chan os.Signal,
	lost <-chan error, stdout, stderr io.Writer) (int, error) {
	if _, err := fmt.Fprintf(stdout, "holding %s (token %s); Ctrl-C releases it\n", spec.what(), token); err != nil {
		fmt.Fprintf(stderr, "dflockctl: write output: %v\n", err)
	}
	select {
	case s := <-sigs:
		fmt.Fprintf(stderr, "dflockctl: %v: releasing %s\n", s, spec.what())
	case <-ctx.Done():
	case err := <-lost:
		fmt.Fprintf(stderr, "dflockctl: lost the lease on %s: %s\n", spec.what(), describe(err))
		return exitLeaseLost, err
	}
	return exitOK, nil
}

// supervise runs the command and waits for it, forwarding signals. When
// the lease is lost or ctx ends, the command gets SIGTERM and, if it is
// still running --kill-after later, SIGKILL. It returns the command's exit
// status and, if the lease was lost, the renewal error.
func supervise(ctx context.Context, spec holdSpec, argv []string, token string, sigs <-chan os.Signal,
	lost <-chan error, stdout, stderr io.Writer) (code int, lostErr error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), "DFLOCKCTL_KEY="+spec.key, "DFLOCKCTL_TOKEN="+token)
	cmd.WaitDelay = pipeWaitDelay
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "dflockctl: "+oneLine(err))
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return exitNotFound, nil
		}
		return exitCannotRun, nil
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var (
		kill      <-chan time.Time
		killTimer *time.Timer
	)
	defer func() {
		if killTimer != nil {
			killTimer.Stop()
		}
	}()
	stop := func(why string) {
		if killTimer != nil {
			return // already stopping
		}
		fmt.Fprintf(stderr, "dflockctl: %s; sending SIGTERM to %s (pid %d)\n", why, argv[0], cmd.Process.Pid)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		killTimer = time.NewTimer(time.Duration(spec.flags.KillAfter))
		kill = killTimer.C
	}
	ctxDone := ctx.Done()
	for {
		select {
		case err := <-waited:
			return commandStatus(cmd.ProcessState, err, stderr), lostErr
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-lost:
			lostErr = err
			stop(fmt.Sprintf("lost the lease on %s: %s", spec.what(), oneLine(err)))
		case <-ctxDone:
			ctxDone = nil
			stop("cancelled")
		case <-kill:
			kill = nil
			fmt.Fprintf(stderr, "dflockctl: %s still running %s after SIGTERM; sending SIGKILL\n",
				argv[0], time.Duration(spec.flags.KillAfter))
			_ = cmd.Process.Kill()
		}
	}
}

// commandStatus turns the command's end into an exit status: its own
// code, or 128+N when signal N killed it.
func commandStatus(ps *os.ProcessState, err error, stderr io.Writer) int {
	if ps == nil {
		fmt.Fprintln(stderr, "dflockctl: "+oneLine(err))
		return exitFailure
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalBase + int(ws.Signal())
	}
	return ps.ExitCode()
}

// signalStatus is the conventional exit status after signal s: 128+N.
func signalStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return exitSignalBase + int(n)
	}
	return exitFailure
}
