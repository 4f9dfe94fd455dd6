package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/transport"
)

// Exit statuses of dflockctl's own outcomes. Otherwise lock and semaphore
// exit with the status of the command they ran.
const (
	exitOK          = 0
	exitNotAcquired = 1   // not acquired in time (default of --conflict-exit-code); signal: too few receivers
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
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
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
	cmdTimeout := time.Duration(cli.CommandTimeout)
	// Each --cluster entry is one shard: the members of a cluster,
	// separated by commas, as client.Lock.Servers takes them.
	servers := cli.Server
	if len(cli.Cluster) > 0 {
		servers = make([]string, len(cli.Cluster))
		for i, c := range cli.Cluster {
			if !strings.Contains(c, ",") {
				c += "," // one member given: still a cluster
			}
			servers[i] = c
		}
	}
	switch cli.command {
	case "lock":
		c := &cli.Lock
		return hold(ctx, holdSpec{kind: "lock", key: c.Key, command: c.Command, flags: c.holdFlags, commandTimeout: cmdTimeout},
			servers, opts, stdout, stderr)
	case "semaphore":
		c := &cli.Semaphore
		return hold(ctx, holdSpec{kind: "semaphore", key: c.Key, limit: c.Limit, command: c.Command, flags: c.holdFlags, commandTimeout: cmdTimeout},
			servers, opts, stdout, stderr)
	}
	// The other commands end quietly on SIGINT or SIGTERM.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := target{addr: servers[0], opts: opts, timeout: cmdTimeout, endpoint: cli.endpointOf(servers[0])}
	ct := clusterTarget{members: cli.clusterMembers(), srv: srv}
	switch cli.command {
	case "cluster status":
		err = cli.ClusterOps.Status.run(ctx, ct, stdout)
	case "cluster add":
		err = cli.ClusterOps.Add.run(ctx, ct, stdout)
	case "cluster remove":
		err = cli.ClusterOps.Remove.run(ctx, ct, stdout)
	case "cluster transfer":
		err = cli.ClusterOps.Transfer.run(ctx, ct, stdout)
	case "signal":
		err = cli.Signal.run(ctx, srv, stdin, stdout)
	case "listen":
		err = cli.Listen.run(ctx, srv, stdout, stderr)
	case "stats":
		err = cli.Stats.run(ctx, srv, stdout)
	case "inspect":
		err = cli.Inspect.run(ctx, srv, stdout)
	case "top":
		err = cli.Top.run(ctx, srv, stdin, stdout)
	default:
		err = fmt.Errorf("unknown command %q", cli.command)
	}
	if err != nil {
		return report(stderr, err)
	}
	return exitOK
}

// target is the one server signal, listen and stats talk to.
type target struct {
	addr     string
	opts     client.Options
	timeout  time.Duration // --command-timeout; 0 = none
	endpoint string        // addr as an endpoint URL, for messages
}

// dial connects to the server.
func (s target) dial(ctx context.Context) (*client.Conn, error) {
	return client.Dial(ctx, s.addr, s.opts)
}

// request returns the context for one request, which ends with an
// *answerTimeout after --command-timeout.
func (s target) request(ctx context.Context, command string) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, s.timeout, &answerTimeout{command: command, after: s.timeout})
}

// failed describes an error of a request on a connection that dial had
// opened: a connection closed before the first answer gets the hint of
// a TLS-only server.
func (s target) failed(command string, err error) error {
	if tcpClosed(s.endpoint, err) {
		return &hinted{err: err, msg: fmt.Sprintf("the server at %s closed the connection before answering `%s`", s.endpoint, command),
			hint: tlsHint(s.endpoint)}
	}
	return err
}

// answerTimeout is the cause of a request whose answer did not arrive
// within --command-timeout.
type answerTimeout struct {
	command string
	after   time.Duration
	detail  string // how after adds up; "" = --command-timeout alone
}

func (e *answerTimeout) Error() string {
	detail := e.detail
	if detail == "" {
		detail = "see --command-timeout"
	}
	return fmt.Sprintf("timed out after %s waiting for the server's answer to `%s` (%s)", e.after, e.command, detail)
}

// hinted is an error with the message a person should read.
type hinted struct {
	err  error
	msg  string
	hint string // without parentheses; may be empty
}

func (e *hinted) Error() string {
	if e.hint == "" {
		return e.msg
	}
	return e.msg + " (" + e.hint + ")"
}

func (e *hinted) Unwrap() error { return e.err }

// endpointOf returns addr as the endpoint URL the client will dial, or
// addr itself when it does not parse (the client then says why).
func (c *CLI) endpointOf(addr string) string {
	e, err := transport.ParseAddr(addr, c.transportOf(addr))
	if err != nil {
		return addr
	}
	return e.String()
}

// report prints err and returns its exit status: exitUsage for usage
// errors and arguments the client rejected, exitFailure otherwise.
func report(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "dflockctl: "+describe(err))
	return exitCode(err)
}

// exitCode maps an error to dflockctl's exit status.
func exitCode(err error) int {
	if _, ok := errors.AsType[*usageError](err); ok || errors.Is(err, client.ErrInvalid) {
		return exitUsage
	}
	if _, ok := errors.AsType[*tooFew](err); ok {
		return exitNotAcquired
	}
	return exitFailure
}

// describe turns err into one line for a person: the address once, the
// cause, and a hint where one helps.
func describe(err error) string {
	if h, ok := errors.AsType[*hinted](err); ok {
		return oneLine(h)
	}
	if at, ok := errors.AsType[*answerTimeout](err); ok {
		return at.Error()
	}
	if errors.Is(err, client.ErrDraining) {
		return "server shutting down (it refused the request while draining; retry once it is back)"
	}
	if errors.Is(err, client.ErrAuth) {
		return "the server refused the auth token (check --auth-token, --auth-token-file or $DFLOCKD_AUTH_TOKEN)"
	}
	if nl, ok := errors.AsType[*client.NoLeaderError](err); ok {
		return oneLine(fmt.Errorf("no leader: %d of %d reachable (%s)", nl.Reachable(), nl.Members(), describeAttempts(nl)))
	}
	if de, ok := errors.AsType[*client.DialError](err); ok {
		return oneLine(dialHint(de))
	}
	return oneLine(err)
}

// dialHint describes a failed connection attempt.
func dialHint(de *client.DialError) error {
	at := "dflockd at " + de.Endpoint
	h := &hinted{err: de, msg: "cannot reach " + at + ": " + client.Cause(de.Err)}
	var (
		recordErr tls.RecordHeaderError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.Is(de.Err, context.DeadlineExceeded) && !de.Handshake:
		h.msg = fmt.Sprintf("could not connect to %s within %s", at, de.Timeout)
		h.hint = "see --dial-timeout; is the address right? is a firewall dropping the packets?"
	case errors.Is(de.Err, context.DeadlineExceeded):
		h.msg = fmt.Sprintf("%s accepted the connection but did not finish the handshake within %s", at, de.Timeout)
		h.hint = "see --dial-timeout"
		if tls := tlsHint(de.Endpoint); tls != "" {
			h.hint += "; " + tls
		}
	case errors.Is(de.Err, syscall.ECONNREFUSED):
		h.hint = "is the server running?"
	case errors.Is(de.Err, syscall.ENOENT):
		h.msg = "cannot reach " + at + ": no such socket file"
		h.hint = "is the server running? is the path right?"
	case errors.Is(de.Err, syscall.EACCES):
		h.hint = "is this user allowed to use the socket? see the server's --unix-socket-mode"
	case errors.As(de.Err, &dnsErr):
		h.hint = "is the host name right?"
	case errors.As(de.Err, &recordErr):
		h.msg = "the server at " + de.Endpoint + " does not speak TLS"
		h.hint = "is it plain TCP? try tcp://" + strings.TrimPrefix(de.Endpoint, "tls://")
	case tcpClosed(de.Endpoint, de.Err):
		h.msg = "the server at " + de.Endpoint + " closed the connection during the handshake"
		h.hint = tlsHint(de.Endpoint)
	}
	return h
}

// tcpClosed reports whether err is the connection to a plain tcp
// endpoint ending before an answer: what a TLS-only server does to a
// client that does not speak TLS.
func tcpClosed(endpoint string, err error) bool {
	if !strings.HasPrefix(endpoint, "tcp://") {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// tlsHint suggests TLS for a plain tcp endpoint.
func tlsHint(endpoint string) string {
	if addr, ok := strings.CutPrefix(endpoint, "tcp://"); ok {
		return "is it TLS-only? try tls://" + addr
	}
	return ""
}

// oneLine collapses whitespace so that an error prints on one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
