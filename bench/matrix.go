package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/dflockd/dflockd/transport"
)

// MatrixConfig describes a matrix run: every mode over every transport at
// every worker count, against in-process servers the matrix starts itself.
type MatrixConfig struct {
	// Base holds the per-run settings (rounds, warm-up, pipeline, lease,
	// ...); its Mode, Workers and Servers are set by the matrix.
	Base Config
	// Modes to run (default: lock).
	Modes []Mode
	// Transports to cover (default: tcp, unix, tls, quic).
	Transports []string
	// Workers are the worker counts (default: 1, 10, 50, 100).
	Workers []int
	// Baseline also measures the echo baseline and the efficiency, for
	// the modes it applies to.
	Baseline bool
	// Repeats is how many times each cell runs (alternating with echo when
	// Baseline is set); the cell reports the aggregate (default 1).
	Repeats int
	// Log, when set, receives one line per finished cell.
	Log io.Writer
}

// Default matrix axes.
var (
	DefaultTransports = []string{"tcp", "unix", "tls", "quic"}
	DefaultWorkers    = []int{1, 10, 50, 100}
)

// MatrixRow is one cell of the matrix.
type MatrixRow struct {
	Transport string      `json:"transport"`
	Mode      Mode        `json:"mode"`
	Workers   int         `json:"workers"`
	Result    *Result     `json:"result"`
	Baseline  *Comparison `json:"baseline,omitempty"`
}

// RunMatrix runs the matrix. A transport that this build leaves out
// (quic with the noquic tag) is skipped with a note on Log.
func RunMatrix(ctx context.Context, mc MatrixConfig) ([]MatrixRow, error) {
	if len(mc.Modes) == 0 {
		mc.Modes = []Mode{ModeLock}
	}
	if len(mc.Transports) == 0 {
		mc.Transports = DefaultTransports
	}
	if len(mc.Workers) == 0 {
		mc.Workers = DefaultWorkers
	}
	logf := func(format string, args ...any) {
		if mc.Log != nil {
			fmt.Fprintf(mc.Log, format+"\n", args...)
		}
	}
	var rows []MatrixRow
	for _, name := range mc.Transports {
		srv, err := StartLocal(ctx, name, KindDflockd)
		if errors.Is(err, transport.ErrDisabled) {
			logf("bench: %s skipped: %v", name, err)
			continue
		}
		if err != nil {
			return rows, err
		}
		var echo *Local
		if mc.Baseline {
			if echo, err = StartLocal(ctx, name, KindEcho); err != nil {
				srv.Close()
				return rows, err
			}
		}
		got, err := runCells(ctx, mc, name, srv, echo, logf)
		rows = append(rows, got...)
		srv.Close()
		if echo != nil {
			echo.Close()
		}
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// runCells runs every mode and worker count of one transport.
func runCells(ctx context.Context, mc MatrixConfig, name string, srv, echo *Local, logf func(string, ...any)) ([]MatrixRow, error) {
	var rows []MatrixRow
	for _, mode := range mc.Modes {
		for _, workers := range mc.Workers {
			cfg := mc.Base
			cfg.Mode = mode
			cfg.Workers = workers
			// Keys of their own per cell: a semaphore's limit defaults to
			// the worker count and must match on every use of a key.
			cfg.Key = fmt.Sprintf("%s_%s%d", cfg.withDefaults().Key, mode, workers)
			cfg.Servers = []transport.Endpoint{srv.Endpoint}
			cfg.Transport = srv.Client
			row := MatrixRow{Transport: name, Mode: mode, Workers: workers}
			if echo != nil && mode != ModeHandoff && mode != ModeSignal {
				ecfg := cfg
				ecfg.Servers = []transport.Endpoint{echo.Endpoint}
				ecfg.Transport = echo.Client
				cmp, err := Compare(ctx, cfg, ecfg, mc.Repeats)
				if err != nil {
					return rows, fmt.Errorf("%s %s %d workers: %w", name, mode, workers, err)
				}
				row.Result, row.Baseline = cmp.Dflockd, cmp
				logf("bench: %-4s %-9s %3d workers: %9.0f ops/s, p99 %s; echo %9.0f ops/s, p99 %s; efficiency %.3f",
					name, mode, workers, cmp.Dflockd.Throughput, ms(cmp.Dflockd.Latency.P99),
					cmp.Echo.Throughput, ms(cmp.Echo.Latency.P99), cmp.Efficiency)
			} else {
				var rs []*Result
				for range max(mc.Repeats, 1) {
					r, err := Run(ctx, cfg)
					if err != nil {
						return rows, fmt.Errorf("%s %s %d workers: %w", name, mode, workers, err)
					}
					rs = append(rs, r)
				}
				row.Result = Aggregate(rs)
				logf("bench: %-4s %-9s %3d workers: %9.0f ops/s, p99 %s",
					name, mode, workers, row.Result.Throughput, ms(row.Result.Latency.P99))
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// WriteMatrix writes one Markdown table per transport and mode; cells with
// a baseline get the echo figures and the efficiency.
func WriteMatrix(w io.Writer, rows []MatrixRow) error {
	var b strings.Builder
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j].Transport == rows[i].Transport && rows[j].Mode == rows[i].Mode {
			j++
		}
		group := rows[i:j]
		withBase := group[0].Baseline != nil
		r0 := group[0].Result
		fmt.Fprintf(&b, "### %s — %s (pipeline %d, %d conn/worker)\n\n", group[0].Transport, group[0].Mode, r0.Pipeline, r0.Connections)
		if withBase {
			b.WriteString("| Workers | Rounds | Ops | Throughput | Mean | p50 | p99 | Echo ops/s | Echo p99 | Efficiency | p99 ÷ echo |\n")
			b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		} else {
			b.WriteString(tableHeader)
		}
		for _, row := range group {
			r := row.Result
			fmt.Fprintf(&b, "| %d | %d | %d | %.0f | %s | %s | %s |",
				r.Workers, r.Rounds, r.Ops, r.Throughput, msShort(r.Latency.Mean), msShort(r.Latency.P50), msShort(r.Latency.P99))
			if c := row.Baseline; c != nil {
				fmt.Fprintf(&b, " %.0f | %s | %.3f | %.2f |", c.Echo.Throughput, msShort(c.Echo.Latency.P99), c.Efficiency, c.P99Ratio)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
		i = j
	}
	_, err := io.WriteString(w, b.String())
	return err
}
