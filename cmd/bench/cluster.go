package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dflockd/dflockd/bench"
	"github.com/dflockd/dflockd/transport"
)

// clusterFlags are the flags of a run against a local cluster of dflockd
// processes (embedded in RunCmd).
type clusterFlags struct {
	Cluster          int           `name:"cluster" placeholder:"N" help:"Start a local cluster of N dflockd processes (replicated mode, temporary fsync'd data dirs, loopback; with --auth-token, the nodes require it) and measure the modes through its leader and through a follower."`
	ServerBin        string        `name:"server-bin" placeholder:"PATH" help:"dflockd binary for --cluster (default: go build of this module into a temporary dir)."`
	ClusterWorkers   []int         `name:"cluster-workers" sep:"," placeholder:"N,..." help:"Worker counts of --cluster (default: --workers)."`
	ClusterHeartbeat time.Duration `name:"cluster-heartbeat" placeholder:"DURATION" help:"--raft-heartbeat of the cluster's nodes (default: the server's, 500ms)."`
	ClusterMinOps    int           `name:"cluster-min-ops" placeholder:"N" help:"With --cluster: raise --rounds of a cell so that its workers do at least N operations together (few workers get more rounds)."`
	ClusterMemory    bool          `name:"cluster-memory" help:"With --cluster, also measure one in-memory dflockd process (no --data-dir) with the same cells."`
	Failover         int           `name:"failover" placeholder:"N" help:"With --cluster: instead of the leader/follower cells, run --workers workers per mode on named sessions while killing the leader N times (SIGKILL), and report the gaps and the checks that no result was lost or duplicated."`
	FailoverSpacing  time.Duration `name:"failover-spacing" default:"2s" placeholder:"DURATION" help:"Steady running before the first kill, after each restart and after the last."`
	Plot             string        `name:"plot" placeholder:"DIR" help:"Also draw charts into DIR: throughput against workers, latency percentile curves, the failover timeline."`
	PlotFormat       string        `name:"plot-format" enum:"svg,png" default:"svg" help:"Chart format: svg or png."`
}

// ClusterRow is one cell of a --cluster run.
type ClusterRow struct {
	Mode     bench.Mode    `json:"mode"`
	Workers  int           `json:"workers"`
	Leader   *bench.Result `json:"leader"`
	Follower *bench.Result `json:"follower"`
	Memory   *bench.Result `json:"memory,omitempty"`
	Load     string        `json:"load,omitempty"` // /proc/loadavg before the cell
}

// validate checks the cluster flags against the rest.
func (c *RunCmd) validateCluster() error {
	switch {
	case c.Cluster < 0 || c.Failover < 0 || c.ClusterMinOps < 0:
		return usagef("--cluster, --cluster-min-ops and --failover must be >= 0")
	case c.Cluster == 0 && (c.Failover > 0 || c.ClusterMemory || len(c.ClusterWorkers) > 0 || c.ClusterMinOps > 0):
		return usagef("--failover, --cluster-memory, --cluster-min-ops and --cluster-workers need --cluster")
	case c.Cluster > 0 && (c.Matrix || c.Local || c.Baseline != ""):
		return usagef("--cluster runs its own servers: not with --matrix, --local or --baseline")
	case c.Cluster > 0 && c.Transport != "" && c.Transport != "tcp":
		return usagef("--cluster serves tcp only")
	case c.Failover > 0 && c.FailoverSpacing <= 0:
		return usagef("--failover-spacing must be > 0")
	}
	for _, w := range c.ClusterWorkers {
		if w <= 0 {
			return usagef("--cluster-workers must be > 0")
		}
	}
	return nil
}

// runCluster starts the cluster and runs the cells or the failover runs.
func (c *RunCmd) runCluster(ctx context.Context, cfg bench.Config, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	bin := c.ServerBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "dflockd-bench-bin-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
		logf("bench: building dflockd (give --server-bin to skip)")
		if bin, err = bench.BuildServer(ctx, dir); err != nil {
			return err
		}
	}
	pc := bench.ProcClusterConfig{Bin: bin, Nodes: c.Cluster, Heartbeat: c.ClusterHeartbeat,
		Args: []string{"--shutdown-timeout", "2"}, AuthToken: cfg.AuthToken}
	cl, err := bench.StartProcCluster(ctx, pc)
	if err != nil {
		return err
	}
	defer cl.Close()
	leader, err := cl.Leader(ctx, -1)
	if err != nil {
		return err
	}
	var pids []string
	for i := range cl.Size() {
		pids = append(pids, fmt.Sprintf("%s pid %d on %s", cl.ID(i), cl.PID(i), cl.Endpoint(i).Addr))
	}
	logf("bench: cluster of %d: %s; leader %s", cl.Size(), strings.Join(pids, ", "), cl.ID(leader))
	if c.Failover > 0 {
		return c.runFailover(ctx, cfg, cl, stdout, logf)
	}

	var mem *bench.ProcCluster
	if c.ClusterMemory {
		// One in-memory node: the same binary without --data-dir.
		if mem, err = bench.StartProcCluster(ctx, bench.ProcClusterConfig{Bin: bin, Nodes: 1, Memory: true,
			Args: []string{"--shutdown-timeout", "2"}, AuthToken: cfg.AuthToken}); err != nil {
			return err
		}
		defer mem.Close()
		logf("bench: in-memory node pid %d on %s", mem.PID(0), mem.Endpoint(0).Addr)
	}
	workers := c.ClusterWorkers
	if len(workers) == 0 {
		workers = []int{cfg.Workers}
	}
	var rows []ClusterRow
	for _, m := range c.Mode {
		for _, w := range workers {
			row := ClusterRow{Mode: bench.Mode(m), Workers: w, Load: loadAvg()}
			// The leader may have moved (an election on a busy machine):
			// ask again before each cell.
			if leader, err = cl.Leader(ctx, -1); err != nil {
				return err
			}
			follower := (leader + 1) % cl.Size()
			cell := func(ep transport.Endpoint, tag string) (*bench.Result, error) {
				cc := cfg
				cc.Mode, cc.Workers = bench.Mode(m), w
				cc.Rounds = max(cc.Rounds, (c.ClusterMinOps+w-1)/w)
				cc.Key = fmt.Sprintf("%s_%s%d_%s", cfg.Key, m, w, tag)
				cc.Servers = []transport.Endpoint{ep}
				var rs []*bench.Result
				for range c.Repeat {
					r, err := bench.Run(ctx, cc)
					if err != nil {
						return nil, fmt.Errorf("%s %s %d workers: %w", tag, m, w, err)
					}
					rs = append(rs, r)
				}
				return bench.Aggregate(rs), nil
			}
			if row.Leader, err = cell(cl.Endpoint(leader), "leader"); err != nil {
				return err
			}
			if row.Follower, err = cell(cl.Endpoint(follower), "follower"); err != nil {
				return err
			}
			if mem != nil {
				if row.Memory, err = cell(mem.Endpoint(0), "memory"); err != nil {
					return err
				}
			}
			logf("bench: cluster %-9s %3d workers: leader %7.0f ops/s p99 %6.2f ms; follower %7.0f ops/s p99 %6.2f ms%s (load %s)",
				m, w, row.Leader.Throughput, msF(row.Leader.Latency.P99), row.Follower.Throughput, msF(row.Follower.Latency.P99),
				memNote(row.Memory), row.Load)
			rows = append(rows, row)
		}
	}
	var b strings.Builder
	writeClusterTables(&b, cl.Size(), rows, c.Repeat)
	if c.JSON {
		if err := bench.WriteJSON(stdout, rows); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, b.String())
	}
	if c.Plot != "" {
		files, err := clusterCharts(c.Plot, c.PlotFormat, cl.Size(), rows)
		if err != nil {
			return err
		}
		logf("bench: charts: %s", strings.Join(files, ", "))
	}
	return c.writeReport(b.String())
}

func msF(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func memNote(r *bench.Result) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("; in-memory %7.0f ops/s p99 %6.2f ms", r.Throughput, msF(r.Latency.P99))
}

// loadAvg is the 1-minute load average (Linux), for the report: the
// figures depend on what else the machine runs.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// writeClusterTables writes one Markdown table per mode.
func writeClusterTables(b *strings.Builder, nodes int, rows []ClusterRow, repeats int) {
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j].Mode == rows[i].Mode {
			j++
		}
		withMem := rows[i].Memory != nil
		fmt.Fprintf(b, "### %d-node cluster — %s (ops/s and ms; %d runs per cell)\n\n", nodes, rows[i].Mode, repeats)
		b.WriteString("| Workers | Ops | Leader ops/s | p50 | p99 | Follower ops/s | p50 | p99 | Follower ÷ leader |")
		sep := "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		if withMem {
			b.WriteString(" In-memory ops/s | p50 | p99 | Leader ÷ in-memory |")
			sep += "---:|---:|---:|---:|"
		}
		b.WriteString(" Load |\n" + sep + "---:|\n")
		for _, r := range rows[i:j] {
			l, f := r.Leader, r.Follower
			fmt.Fprintf(b, "| %d | %d | %.0f | %.3f | %.3f | %.0f | %.3f | %.3f | %.2f |", r.Workers, l.Ops,
				l.Throughput, msF(l.Latency.P50), msF(l.Latency.P99), f.Throughput, msF(f.Latency.P50), msF(f.Latency.P99),
				ratio(f.Throughput, l.Throughput))
			if m := r.Memory; m != nil {
				fmt.Fprintf(b, " %.0f | %.3f | %.3f | %.3f |", m.Throughput, msF(m.Latency.P50), msF(m.Latency.P99), ratio(l.Throughput, m.Throughput))
			}
			fmt.Fprintf(b, " %s |\n", r.Load)
		}
		b.WriteString("\n")
		i = j
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// clusterCharts draws, per mode, throughput against workers (leader,
// follower, in-memory) and the latency curves of the leader beside the
// in-memory node.
func clusterCharts(dir, ext string, nodes int, rows []ClusterRow) ([]string, error) {
	var files []string
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j].Mode == rows[i].Mode {
			j++
		}
		mode := rows[i].Mode
		lead := bench.Series{Name: "through the leader", Colour: 0}
		fol := bench.Series{Name: "through a follower (relay)", Colour: 1}
		mem := bench.Series{Name: "in-memory single node", Colour: 2, Dashed: true}
		var curves []bench.CurveSeries
		for k, r := range rows[i:j] {
			lead.Workers, lead.OpsPerS = append(lead.Workers, r.Workers), append(lead.OpsPerS, r.Leader.Throughput)
			fol.Workers, fol.OpsPerS = append(fol.Workers, r.Workers), append(fol.OpsPerS, r.Follower.Throughput)
			curves = append(curves, bench.CurveSeries{Name: fmt.Sprintf("leader, %d workers", r.Workers), Curve: r.Leader.Latency.Curve, Colour: k})
			if r.Memory != nil {
				mem.Workers, mem.OpsPerS = append(mem.Workers, r.Workers), append(mem.OpsPerS, r.Memory.Throughput)
				curves = append(curves, bench.CurveSeries{Name: fmt.Sprintf("in-memory, %d workers", r.Workers), Curve: r.Memory.Latency.Curve, Colour: k, Dashed: true})
			}
		}
		series := []bench.Series{lead, fol}
		if len(mem.Workers) > 0 {
			series = append(series, mem)
		}
		f := filepath.Join(dir, fmt.Sprintf("cluster-throughput-%s.%s", mode, ext))
		if err := bench.PlotThroughput(f, fmt.Sprintf("%d-node cluster, %s: throughput against workers", nodes, mode), series); err != nil {
			return files, err
		}
		files = append(files, f)
		f = filepath.Join(dir, fmt.Sprintf("cluster-latency-%s.%s", mode, ext))
		if err := bench.PlotLatency(f, fmt.Sprintf("cluster, %s: latency percentiles (leader)", mode), curves); err != nil {
			return files, err
		}
		files = append(files, f)
		i = j
	}
	return files, nil
}

// runFailover runs one failover run per mode.
func (c *RunCmd) runFailover(ctx context.Context, cfg bench.Config, cl *bench.ProcCluster, stdout io.Writer, logf func(string, ...any)) error {
	var results []*bench.FailoverResult
	var b strings.Builder
	for _, m := range c.Mode {
		fc := cfg
		fc.Mode = bench.Mode(m)
		fc.Key = fmt.Sprintf("%s_failover_%s", cfg.Key, m)
		load := loadAvg()
		res, err := bench.RunFailover(ctx, bench.FailoverConfig{Base: fc, Cluster: cl, Kills: c.Failover,
			Spacing: c.FailoverSpacing, Log: logf})
		if err != nil {
			// What finished before is still worth reading.
			if !c.JSON {
				fmt.Fprint(stdout, b.String())
			}
			return fmt.Errorf("failover %s: %w", m, err)
		}
		results = append(results, res)
		writeFailover(&b, res, load)
		if c.Plot != "" {
			f := filepath.Join(c.Plot, fmt.Sprintf("failover-%s.%s", m, c.PlotFormat))
			title := fmt.Sprintf("%s, %d workers: leader killed %d times", m, res.Workers, len(res.Kills))
			if err := bench.PlotTimeline(f, title, res); err != nil {
				return err
			}
			logf("bench: chart: %s", f)
		}
	}
	if c.JSON {
		if err := bench.WriteJSON(stdout, results); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, b.String())
	}
	return c.writeReport(b.String())
}

// writeFailover renders one failover run.
func writeFailover(b *strings.Builder, r *bench.FailoverResult, load string) {
	fmt.Fprintf(b, "### Failover — %s, %d workers (load %s)\n\n", r.Mode, r.Workers, load)
	b.WriteString("| Kill | Node | New leader | Elected after (ms) | Gap (ms) |\n|---:|---|---|---:|---:|\n")
	for i, k := range r.Kills {
		gap := "none"
		if k.Gap >= 0 {
			gap = fmt.Sprintf("%.0f", msF(k.Gap))
		}
		fmt.Fprintf(b, "| %d | %s | %s | %.0f | %s |\n", i+1, k.Node, k.NewLeader, msF(k.Elected), gap)
	}
	fmt.Fprintf(b, "\n%d operations in %.1f s (%.0f ops/s), p50 %.3f ms, p99 %.3f ms, max %.0f ms; %d reconnects.\n",
		r.Ops, r.Wall.Seconds(), r.Throughput, msF(r.Latency.P50), msF(r.Latency.P99), msF(r.Latency.Max), r.Reconnects)
	fmt.Fprintf(b, "Checks passed: fences unique and rising; the cluster issued %d grants, workers recorded %d and lost the answer of %d "+
		"(sessions ended with bye; %d collected with w); every session resumed holding nothing.\n\n",
		r.Issued, r.Recorded, r.Orphans, r.Collected)
}
