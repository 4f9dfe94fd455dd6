package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Comparison is dflockd measured against the echo baseline, run back to
// back (dflockd, echo, dflockd, echo, ...) so that drift in the machine's
// speed touches both alike.
type Comparison struct {
	Dflockd *Result `json:"dflockd"` // aggregate of the dflockd runs
	Echo    *Result `json:"echo"`    // aggregate of the echo runs
	// Efficiency is dflockd ops/s ÷ echo ops/s.
	Efficiency float64 `json:"efficiency"`
	// P99Ratio is dflockd p99 ÷ echo p99.
	P99Ratio float64 `json:"p99_ratio"`
	Repeats  int     `json:"repeats"`
}

// errNoBaseline is returned for modes the echo baseline cannot stand in
// for.
var errNoBaseline = errors.New("the echo baseline applies to the lock, semaphore and twophase modes")

// Compare runs cfg against dflockd (cfg.Servers) and against echo
// (cfg with Servers = echo), alternating, repeats times each.
func Compare(ctx context.Context, cfg Config, echo Config, repeats int) (*Comparison, error) {
	cfg = cfg.withDefaults()
	if cfg.Mode == ModeHandoff || cfg.Mode == ModeSignal {
		return nil, fmt.Errorf("bench: %s: %w", cfg.Mode, errNoBaseline)
	}
	repeats = max(repeats, 1)
	var a, b []*Result
	for i := range repeats {
		ra, err := Run(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("dflockd run %d: %w", i+1, err)
		}
		rb, err := Run(ctx, echo)
		if err != nil {
			return nil, fmt.Errorf("echo run %d: %w", i+1, err)
		}
		a, b = append(a, ra), append(b, rb)
	}
	c := &Comparison{Dflockd: Aggregate(a), Echo: Aggregate(b), Repeats: repeats}
	if c.Echo.Throughput > 0 {
		c.Efficiency = c.Dflockd.Throughput / c.Echo.Throughput
	}
	if c.Echo.Latency.P99 > 0 {
		c.P99Ratio = float64(c.Dflockd.Latency.P99) / float64(c.Echo.Latency.P99)
	}
	return c, nil
}

// Aggregate folds repeated runs of one configuration into one Result:
// ops and wall time are summed (so throughput is total ops ÷ total time),
// the mean is weighted by ops, min and max are extremes, and the
// percentiles and deviation are the median of the runs'.
func Aggregate(rs []*Result) *Result {
	if len(rs) == 1 {
		return rs[0]
	}
	out := *rs[0]
	out.Ops, out.Wall, out.Published, out.Expected = 0, 0, 0, 0
	var meanSum float64
	for _, r := range rs {
		out.Ops += r.Ops
		out.Wall += r.Wall
		out.Published += r.Published
		out.Expected += r.Expected
		meanSum += float64(r.Latency.Mean) * float64(r.Ops)
		out.Latency.Min = min(out.Latency.Min, r.Latency.Min)
		out.Latency.Max = max(out.Latency.Max, r.Latency.Max)
	}
	if out.Wall > 0 {
		out.Throughput = float64(out.Ops) / out.Wall.Seconds()
	}
	if out.Ops > 0 {
		out.Latency.Mean = time.Duration(meanSum / float64(out.Ops))
	}
	med := func(get func(*Result) time.Duration) time.Duration {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	out.Latency.P50 = med(func(r *Result) time.Duration { return r.Latency.P50 })
	out.Latency.P90 = med(func(r *Result) time.Duration { return r.Latency.P90 })
	out.Latency.P99 = med(func(r *Result) time.Duration { return r.Latency.P99 })
	out.Latency.P999 = med(func(r *Result) time.Duration { return r.Latency.P999 })
	out.Latency.Stdev = med(func(r *Result) time.Duration { return r.Latency.Stdev })
	out.Latency.Curve = nil
	if n := len(rs[0].Latency.Curve); n > 0 {
		out.Latency.Curve = make([]time.Duration, n)
		for i := range n {
			out.Latency.Curve[i] = med(func(r *Result) time.Duration {
				if i < len(r.Latency.Curve) {
					return r.Latency.Curve[i]
				}
				return 0
			})
		}
	}
	return &out
}
