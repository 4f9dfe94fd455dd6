package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// ms renders d in milliseconds with three decimals, as §10 does.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// msShort is ms without the unit, for table cells.
func msShort(d time.Duration) string {
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}

// WriteText writes r in the plain-text layout of §10 (header, totals,
// latency block), with this tool's extra lines after the 1.x ones.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	scheme := "unique per-worker keys"
	if r.Mode == ModeSignal {
		scheme = fmt.Sprintf("%d listeners", r.Listeners)
	} else if r.SharedKey {
		scheme = "shared key"
	}
	fmt.Fprintf(&b, "bench: %d workers x %d rounds (key=%q, conns/worker=%d, %s)\n\n",
		r.Workers, r.Rounds, r.KeyDesc, r.Connections, scheme)
	unit := "ops/s"
	if r.Mode == ModeSignal {
		unit = "frames/s"
	}
	fmt.Fprintf(&b, "  total ops : %d\n", r.Ops)
	fmt.Fprintf(&b, "  wall time : %.3fs\n", r.Wall.Seconds())
	fmt.Fprintf(&b, "  throughput: %.1f %s\n\n", r.Throughput, unit)
	l := r.Latency
	fmt.Fprintf(&b, "  mean      : %s\n", ms(l.Mean))
	fmt.Fprintf(&b, "  min       : %s\n", ms(l.Min))
	fmt.Fprintf(&b, "  max       : %s\n", ms(l.Max))
	fmt.Fprintf(&b, "  p50       : %s\n", ms(l.P50))
	fmt.Fprintf(&b, "  p99       : %s\n", ms(l.P99))
	fmt.Fprintf(&b, "  stdev     : %s\n", ms(l.Stdev))
	fmt.Fprintf(&b, "  p90       : %s\n", ms(l.P90))
	fmt.Fprintf(&b, "  p99.9     : %s\n", ms(l.P999))
	fmt.Fprintf(&b, "  mode      : %s over %s, pipeline %d\n", r.Mode, r.Transport, r.Pipeline)
	if r.Mode == ModeSignal {
		fmt.Fprintf(&b, "  published : %d (latency is publish to delivery)\n", r.Published)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tableHeader is the README's table.
const tableHeader = "| Workers | Rounds | Ops | Throughput | Mean | p50 | p99 |\n|---:|---:|---:|---:|---:|---:|---:|\n"

// WriteTable writes results as the Markdown table the README uses:
// Workers | Rounds | Ops | Throughput (ops/s) | Mean | p50 | p99 (ms).
func WriteTable(w io.Writer, rs []*Result) error {
	var b strings.Builder
	b.WriteString(tableHeader)
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %d | %d | %.0f | %s | %s | %s |\n",
			r.Workers, r.Rounds, r.Ops, r.Throughput, msShort(r.Latency.Mean), msShort(r.Latency.P50), msShort(r.Latency.P99))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("bench: json: %w", err)
	}
	return nil
}
