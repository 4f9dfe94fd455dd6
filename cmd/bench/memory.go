package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dflockd/dflockd/bench"
)

// MemoryCmd measures a dflockd binary's resident memory: the server runs
// as its own process, and this process opens the idle connections and
// holds the locks, so that only the server's memory is counted.
type MemoryCmd struct {
	ServerBin string `name:"server-bin" required:"" placeholder:"PATH" help:"dflockd binary to start (go build -o /tmp/dflockd ./cmd/dflockd)."`
	IdleConns int    `name:"idle-conns" default:"5000" help:"Idle TCP connections to open (this process needs as many open files)."`
	HeldLocks int    `name:"held-locks" default:"1000000" help:"Locks to acquire and hold, over --lock-conns connections (keys of at most 16 bytes)."`
	LockConns int    `name:"lock-conns" default:"16" help:"Connections that hold the locks."`
	JSON      bool   `name:"json" help:"Print the result as JSON."`
}

// MemoryResult is what the memory command measured. Sizes are bytes of
// the server's resident set (VmRSS).
type MemoryResult struct {
	BaselineRSS     int64   `json:"baseline_rss"`
	IdleConns       int     `json:"idle_conns"`
	IdleRSS         int64   `json:"idle_rss"`
	PerIdleConn     float64 `json:"bytes_per_idle_conn"`
	HeldLocks       int     `json:"held_locks"`
	BeforeLocksRSS  int64   `json:"before_locks_rss"`
	LocksRSS        int64   `json:"locks_rss"`
	PerHeldLock     float64 `json:"bytes_per_held_lock"`
	LockConnections int     `json:"lock_connections"`
}

func (m *MemoryCmd) run(ctx context.Context, stdout, stderr io.Writer) error {
	if runtime.GOOS != "linux" {
		return errors.New("memory: reads the server's VmRSS from /proc, so it runs on Linux only")
	}
	if m.IdleConns < 0 || m.HeldLocks < 0 || m.LockConns <= 0 {
		return usagef("memory: --idle-conns and --held-locks must be >= 0, --lock-conns > 0")
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	var logs bytes.Buffer
	cmd := exec.Command(m.ServerBin,
		"--listen", "tcp://"+addr,
		"--max-locks", strconv.Itoa(m.HeldLocks+1024),
		"--read-timeout", "3600", // idle connections must stay open while measured
		"--default-lease-ttl", "3600")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("memory: start %s: %w", m.ServerBin, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer stopProcess(cmd, exited)
	if err := bench.WaitAccepting(ctx, addr, exited, 10*time.Second); err != nil {
		return fmt.Errorf("memory: server: %w (its output: %s)", err, strings.TrimSpace(logs.String()))
	}
	fmt.Fprintf(stderr, "bench: memory: dflockd pid %d on %s\n", pid, addr)

	res := MemoryResult{IdleConns: m.IdleConns, HeldLocks: m.HeldLocks, LockConnections: m.LockConns}
	if res.BaselineRSS, err = settledRSS(ctx, pid); err != nil {
		return err
	}
	idle, err := openIdle(ctx, addr, m.IdleConns)
	if err == nil {
		res.IdleRSS, err = settledRSS(ctx, pid)
	}
	closeAll(idle)
	if err != nil {
		return err
	}
	if m.IdleConns > 0 {
		res.PerIdleConn = float64(res.IdleRSS-res.BaselineRSS) / float64(m.IdleConns)
	}
	fmt.Fprintf(stderr, "bench: memory: %d idle connections measured; now %d held locks\n", m.IdleConns, m.HeldLocks)

	time.Sleep(time.Second) // let the server retire the idle sessions
	if res.BeforeLocksRSS, err = settledRSS(ctx, pid); err != nil {
		return err
	}
	holders, err := holdLocks(ctx, addr, m.HeldLocks, m.LockConns)
	if err == nil {
		res.LocksRSS, err = settledRSS(ctx, pid)
	}
	closeAll(holders)
	if err != nil {
		return err
	}
	if m.HeldLocks > 0 {
		res.PerHeldLock = float64(res.LocksRSS-res.BeforeLocksRSS) / float64(m.HeldLocks)
	}
	if m.JSON {
		return bench.WriteJSON(stdout, res)
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(stdout, "dflockd resident memory (VmRSS of pid %d)\n\n", pid)
	fmt.Fprintf(stdout, "  baseline          : %s\n", mib(res.BaselineRSS))
	fmt.Fprintf(stdout, "  %7d idle conns : %s  (%.1f KiB per connection)\n", m.IdleConns, mib(res.IdleRSS), res.PerIdleConn/1024)
	fmt.Fprintf(stdout, "  before locks      : %s\n", mib(res.BeforeLocksRSS))
	fmt.Fprintf(stdout, "  %7d held locks: %s  (%.0f bytes per lock, %d connections)\n", m.HeldLocks, mib(res.LocksRSS), res.PerHeldLock, m.LockConns)
	return nil
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("memory: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// stopProcess stops the server by its PID: SIGTERM, then SIGKILL after
// five seconds.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// rss reads VmRSS of pid, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memory: VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("memory: no VmRSS in /proc/%d/status", pid)
}

// settledRSS samples the RSS every 250 ms until two samples in a row are
// within 0.5% (or 5 s pass) and returns the last.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	prev, err := rss(pid)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		cur, err := rss(pid)
		if err != nil {
			return 0, err
		}
		diff := cur - prev
		if diff < 0 {
			diff = -diff
		}
		if diff*200 <= cur {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// openIdle opens n connections, each checked with one ping so that its
// session is fully set up, and leaves them idle.
func openIdle(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := ping(ctx, addr)
				if err != nil {
					select {
					case errs <- fmt.Errorf("memory: idle connection %d: %w", i, err):
					default:
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		closeAll(conns)
		return nil, err
	default:
	}
	return conns, nil
}

// ping dials addr and checks one ping.
func ping(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte("ping\n_\n\n")); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil || line != "ok\n" {
		c.Close()
		return nil, fmt.Errorf("ping answered %q: %v", line, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// holdLocks acquires n locks with keys "m<number>" over conns
// connections, pipelining requests in batches, and leaves them held.
func holdLocks(ctx context.Context, addr string, n, conns int) ([]net.Conn, error) {
	out, err := dialEach(ctx, addr, conns, func(w int, c net.Conn) error {
		return acquireRange(c, w, n, conns)
	})
	if err != nil {
		return nil, fmt.Errorf("memory: holding locks: %w", err)
	}
	return out, nil
}

// dialEach opens n TCP connections to addr at once and runs fn on each
// (i is its index). It returns the connections, or closes them all and
// returns the joined errors when any dial or fn failed.
func dialEach(ctx context.Context, addr string, n int, fn func(i int, c net.Conn) error) ([]net.Conn, error) {
	out := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs[i] = err
				return
			}
			out[i] = c
			errs[i] = fn(i, c)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll(out)
		return nil, err
	}
	return out, nil
}

// acquireRange acquires keys w, w+step, ... below n on c.
func acquireRange(c net.Conn, w, n, step int) error {
	count := max(0, (n-w+step-1)/step) // keys w, w+step, ... below n
	return pipelineBatches(c, count, "ok ", func(b []byte, k int) []byte {
		b = append(b, "l\nm"...)
		b = strconv.AppendInt(b, int64(w+k*step), 10)
		return append(b, "\n0 3600\n"...)
	})
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}
