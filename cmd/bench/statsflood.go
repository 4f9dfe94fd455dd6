package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dflockd/dflockd/bench"
)

// StatsFloodCmd measures what pipelined `stats` cost a dflockd binary: the
// server runs as its own process with many held keys and subscriptions;
// flooders pipeline stats and read their answers only after a stall, while
// a separate connection pings and records its latency. It reports the
// server's resident memory (VmRSS) before and at its peak, and the ping
// latencies.
type StatsFloodCmd struct {
	ServerBin     string        `name:"server-bin" required:"" placeholder:"PATH" help:"dflockd binary to start (go build -o /tmp/dflockd ./cmd/dflockd)."`
	ServerArgs    []string      `name:"server-arg" sep:"none" placeholder:"ARG" help:"Extra server argument, repeatable (--server-arg=--stats-max-items=100)."`
	Keys          int           `name:"keys" default:"1024" help:"Locks to hold while flooding."`
	KeyLen        int           `name:"key-len" default:"240" help:"Length of each held key, bytes (8..250)."`
	Subscriptions int           `name:"subscriptions" default:"100000" help:"Signal subscriptions to hold (one channel each)."`
	SubConns      int           `name:"sub-conns" default:"4" help:"Connections that hold the subscriptions."`
	Flooders      int           `name:"flooders" default:"16" help:"Connections that pipeline stats (0: only ping, a control run)."`
	FloodBytes    int           `name:"flood-bytes" default:"4096" help:"Bytes of pipelined stats requests each flooder sends per round (9 bytes each)."`
	Stall         time.Duration `name:"stall" default:"1s" help:"How long a flooder waits after sending a round before it reads the answers (keep it under the server's --write-timeout)."`
	Duration      time.Duration `name:"duration" default:"10s" help:"How long to flood; flooders finish their current round."`
	PingEvery     time.Duration `name:"ping-every" default:"10ms" help:"Pause between the pinger's round trips."`
	MaxRSS        int64         `name:"max-rss" default:"3072" help:"Stop the server (SIGKILL, by pid) once its VmRSS passes this many MiB, to protect the machine."`
	JSON          bool          `name:"json" help:"Print the result as JSON."`
}

// StatsFloodResult is what stats-flood measured. Sizes are bytes.
type StatsFloodResult struct {
	Keys          int    `json:"keys"`
	Subscriptions int    `json:"subscriptions"`
	Flooders      int    `json:"flooders"`
	StatsBytes    int    `json:"stats_answer_bytes"`   // one unpipelined answer
	StatsTime     int64  `json:"stats_answer_ns"`      // its round trip
	BeforeRSS     int64  `json:"before_rss"`           // settled, after population
	PeakRSS       int64  `json:"peak_rss"`             // highest sample while flooding
	AfterRSS      int64  `json:"after_rss"`            // last sample
	OverLimit     bool   `json:"over_limit"`           // the server was killed at --max-rss
	OverAfter     int64  `json:"over_after_ns"`        // that long after the flood started
	Answers       int64  `json:"answers"`              // stats answers the flooders read
	AnswerBytes   int64  `json:"answer_bytes"`         // their bytes
	Pings         int    `json:"pings"`                // completed pings
	PingP50       int64  `json:"ping_p50_ns"`          // latency percentiles
	PingP99       int64  `json:"ping_p99_ns"`          //
	PingMax       int64  `json:"ping_max_ns"`          //
	PingErr       string `json:"ping_error,omitempty"` // why the pinger stopped early
}

const statsReq = "stats\n_\n\n"

func (c *StatsFloodCmd) run(ctx context.Context, stdout, stderr io.Writer) error {
	if runtime.GOOS != "linux" {
		return errors.New("stats-flood: reads the server's VmRSS from /proc, so it runs on Linux only")
	}
	switch {
	case c.Keys < 0 || c.Subscriptions < 0:
		return usagef("stats-flood: --keys and --subscriptions must be >= 0")
	case c.KeyLen < 8 || c.KeyLen > 250:
		return usagef("stats-flood: --key-len must be between 8 and 250")
	case c.SubConns <= 0 || c.Flooders < 0 || c.FloodBytes < len(statsReq):
		return usagef("stats-flood: --sub-conns must be > 0, --flooders >= 0, --flood-bytes >= %d", len(statsReq))
	case c.Duration <= 0 || c.PingEvery < 0 || c.Stall < 0 || c.MaxRSS <= 0:
		return usagef("stats-flood: --duration and --max-rss must be > 0, --stall and --ping-every >= 0")
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"--listen", "tcp://" + addr,
		"--max-locks", strconv.Itoa(c.Keys + 1024),
		"--read-timeout", "3600", // holders and flooders stay open while measured
		"--default-lease-ttl", "3600"}
	args = append(args, c.ServerArgs...)
	var logs bytes.Buffer
	cmd := exec.Command(c.ServerBin, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("stats-flood: start %s: %w", c.ServerBin, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer stopProcess(cmd, exited)
	if err := bench.WaitAccepting(ctx, addr, exited, 10*time.Second); err != nil {
		return fmt.Errorf("stats-flood: server: %w (its output: %s)", err, strings.TrimSpace(logs.String()))
	}
	fmt.Fprintf(stderr, "bench: stats-flood: dflockd pid %d on %s; holding %d keys and %d subscriptions\n",
		pid, addr, c.Keys, c.Subscriptions)

	var holders []net.Conn
	defer func() { closeAll(holders) }()
	if holders, err = c.populate(ctx, addr); err != nil {
		return err
	}
	res := StatsFloodResult{Keys: c.Keys, Subscriptions: c.Subscriptions, Flooders: c.Flooders}
	if res.StatsBytes, res.StatsTime, err = oneStats(ctx, addr); err != nil {
		return err
	}
	if res.BeforeRSS, err = settledRSS(ctx, pid); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench: stats-flood: one stats answer is %d bytes; flooding for %s\n", res.StatsBytes, c.Duration)

	c.flood(ctx, addr, pid, cmd, &res)
	if c.JSON {
		return bench.WriteJSON(stdout, res)
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	ms := func(ns int64) string { return fmt.Sprintf("%.2f ms", float64(ns)/1e6) }
	fmt.Fprintf(stdout, "dflockd under pipelined stats (pid %d): %d keys of %d bytes, %d subscriptions, %d flooders x %d bytes of stats per round\n\n",
		pid, c.Keys, c.KeyLen, c.Subscriptions, c.Flooders, c.FloodBytes)
	fmt.Fprintf(stdout, "  one stats answer : %d bytes in %s\n", res.StatsBytes, ms(res.StatsTime))
	fmt.Fprintf(stdout, "  VmRSS before     : %s\n", mib(res.BeforeRSS))
	peak := mib(res.PeakRSS)
	if res.OverLimit {
		peak += fmt.Sprintf(" (passed --max-rss %d MiB %.1fs into the flood: server killed)", c.MaxRSS, float64(res.OverAfter)/1e9)
	}
	fmt.Fprintf(stdout, "  VmRSS peak       : %s  (growth %s)\n", peak, mib(res.PeakRSS-res.BeforeRSS))
	fmt.Fprintf(stdout, "  VmRSS after      : %s\n", mib(res.AfterRSS))
	fmt.Fprintf(stdout, "  answers read     : %d (%s)\n", res.Answers, mib(res.AnswerBytes))
	fmt.Fprintf(stdout, "  ping             : %d round trips, p50 %s, p99 %s, max %s\n", res.Pings, ms(res.PingP50), ms(res.PingP99), ms(res.PingMax))
	if res.PingErr != "" {
		fmt.Fprintf(stdout, "  pinger stopped   : %s\n", res.PingErr)
	}
	return nil
}

// populate holds c.Keys locks on one connection and c.Subscriptions
// subscriptions over c.SubConns connections, pipelining in batches. The
// returned connections keep them.
func (c *StatsFloodCmd) populate(ctx context.Context, addr string) ([]net.Conn, error) {
	conns, err := dialEach(ctx, addr, 1+c.SubConns, func(i int, conn net.Conn) error {
		if i == 0 {
			return pipelineBatches(conn, c.Keys, "ok ", func(b []byte, n int) []byte {
				b = append(b, "l\n"...)
				b = append(b, strings.Repeat("k", c.KeyLen-8)...)
				b = fmt.Appendf(b, "%08d", n)
				return append(b, "\n0 3600\n"...)
			})
		}
		w := i - 1
		share := (c.Subscriptions - w + c.SubConns - 1) / c.SubConns // channels w, w+SubConns, ...
		return pipelineBatches(conn, share, "ok\n", func(b []byte, n int) []byte {
			return fmt.Appendf(b, "listen\nch.%d\n\n", w+n*c.SubConns)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("stats-flood: populate: %w", err)
	}
	return conns, nil
}

// pipelineBatches sends n requests made by req, 512 per write, and checks
// that every answer starts with want.
func pipelineBatches(c net.Conn, n int, want string, req func(b []byte, i int) []byte) error {
	const batch = 512
	r := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	for start := 0; start < n; start += batch {
		buf = buf[:0]
		end := min(start+batch, n)
		for i := start; i < end; i++ {
			buf = req(buf, i)
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
		for range end - start {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, want) {
				return fmt.Errorf("answered %q", strings.TrimSpace(line))
			}
		}
	}
	return nil
}

// oneStats times one unpipelined stats round trip on a new connection.
func oneStats(ctx context.Context, addr string) (size int, took int64, err error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, 0, fmt.Errorf("stats-flood: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReaderSize(c, 1<<20)
	start := time.Now()
	if _, err := c.Write([]byte(statsReq)); err != nil {
		return 0, 0, fmt.Errorf("stats-flood: stats: %w", err)
	}
	n, err := skipLines(r, 1)
	if err != nil {
		return 0, 0, fmt.Errorf("stats-flood: stats: %w", err)
	}
	return int(n), int64(time.Since(start)), nil
}

// skipLines reads lines lines from r and returns their total size.
func skipLines(r *bufio.Reader, lines int) (int64, error) {
	var size int64
	for lines > 0 {
		b, err := r.ReadSlice('\n')
		size += int64(len(b))
		switch {
		case err == nil:
			lines--
		case errors.Is(err, bufio.ErrBufferFull):
		default:
			return size, err
		}
	}
	return size, nil
}

// flood runs the flooders and the pinger for c.Duration while sampling
// the server's VmRSS, and fills in res.
func (c *StatsFloodCmd) flood(ctx context.Context, addr string, pid int, cmd *exec.Cmd, res *StatsFloodResult) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup

	// Sampler: peak VmRSS, and the safety stop.
	var peak, last atomic.Int64
	var over atomic.Bool
	var overAfter atomic.Int64
	begin := time.Now()
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := rss(pid); err == nil {
				last.Store(v)
				if v > peak.Load() {
					peak.Store(v)
				}
				if v > c.MaxRSS<<20 && !over.Swap(true) {
					_ = cmd.Process.Kill() // by pid: protects a shared machine
					overAfter.Store(int64(time.Since(begin)))
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	// Pinger.
	var lat []time.Duration
	var pingErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		lat, pingErr = pingLoop(ctx, addr, c.PingEvery)
	}()

	// Flooders.
	var answers, answerBytes atomic.Int64
	deadline := time.Now().Add(c.Duration)
	round := bytes.Repeat([]byte(statsReq), c.FloodBytes/len(statsReq))
	conns := make([]net.Conn, c.Flooders)
	var fwg sync.WaitGroup
	for i := range conns {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return
			}
			conns[i] = conn
			r := bufio.NewReaderSize(conn, 64<<10)
			n := len(round) / len(statsReq)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				_ = conn.SetDeadline(time.Now().Add(c.Stall + 2*time.Minute))
				if _, err := conn.Write(round); err != nil {
					return
				}
				select {
				case <-time.After(c.Stall): // not reading: the server must hold or block
				case <-ctx.Done():
					return
				}
				size, err := skipLines(r, n)
				answerBytes.Add(size)
				if err != nil {
					return
				}
				answers.Add(int64(n))
			}
		}()
	}
	fwg.Wait()
	closeAll(conns)
	select { // the pinger runs the full duration, also with no flooders
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	<-sampled

	res.PeakRSS, res.AfterRSS, res.OverLimit, res.OverAfter = peak.Load(), last.Load(), over.Load(), overAfter.Load()
	res.Answers, res.AnswerBytes = answers.Load(), answerBytes.Load()
	res.Pings = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) int64 { return int64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
		res.PingP50, res.PingP99, res.PingMax = q(0.50), q(0.99), int64(lat[len(lat)-1])
	}
	if pingErr != nil {
		res.PingErr = pingErr.Error()
	}
}

// pingLoop pings on its own connection until ctx ends, pausing every
// between round trips, and returns the round-trip times.
func pingLoop(ctx context.Context, addr string, every time.Duration) ([]time.Duration, error) {
	c, err := ping(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReaderSize(c, 64)
	var lat []time.Duration
	for ctx.Err() == nil {
		start := time.Now()
		if _, err := c.Write([]byte("ping\n_\n\n")); err != nil {
			return lat, ctxOr(ctx, err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return lat, ctxOr(ctx, err)
		}
		if line != "ok\n" {
			return lat, fmt.Errorf("ping answered %q", line)
		}
		lat = append(lat, time.Since(start))
		if every > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}
	return lat, nil
}

// ctxOr returns nil when ctx ended (the error is the deadline that ended
// the loop), else err.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
