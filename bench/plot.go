package bench

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart size: what every --plot file measures.
const (
	ChartWidth  = 16 * vg.Centimeter
	ChartHeight = 10 * vg.Centimeter
)

// Series is one line of a throughput chart: ops/s at each worker count.
type Series struct {
	Name    string
	Workers []int
	OpsPerS []float64
	Dashed  bool
	Colour  int // plotutil colour index
}

// CurveSeries is one latency percentile curve (Latency.Curve, at
// CurvePercentiles).
type CurveSeries struct {
	Name   string
	Curve  []time.Duration
	Dashed bool
	Colour int // plotutil colour index
}

// PlotThroughput draws series as throughput against workers (log-scale
// x) into path; the format follows the extension (.svg, .png, .pdf).
func PlotThroughput(path, title string, series []Series) error {
	if len(series) == 0 {
		return errors.New("bench: plot: no series")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "workers"
	p.Y.Label.Text = "operations per second"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = workerTicks(series)
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	for _, s := range series {
		xys := make(plotter.XYs, 0, len(s.Workers))
		for j, w := range s.Workers {
			xys = append(xys, plotter.XY{X: float64(w), Y: s.OpsPerS[j]})
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("bench: plot %s: %w", s.Name, err)
		}
		style(l, pts, s.Colour, s.Dashed)
		p.Add(l, pts)
		p.Legend.Add(s.Name, l, pts)
	}
	return save(p, path)
}

// workerTicks marks the worker counts the series use.
func workerTicks(series []Series) plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		seen := map[int]bool{}
		var ts []plot.Tick
		for _, s := range series {
			for _, w := range s.Workers {
				if !seen[w] {
					seen[w] = true
					ts = append(ts, plot.Tick{Value: float64(w), Label: strconv.Itoa(w)})
				}
			}
		}
		return ts
	})
}

// PlotLatency draws latency percentile curves: x is the percentile on a
// log scale of "nines" (p50, p90, p99, p99.9, p99.99), y the latency in
// milliseconds on a log scale.
func PlotLatency(path, title string, curves []CurveSeries) error {
	if len(curves) == 0 {
		return errors.New("bench: plot: no curves")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var ts []plot.Tick
		for _, pc := range []string{"50", "90", "99", "99.9", "99.99"} {
			v, _ := strconv.ParseFloat(pc, 64)
			ts = append(ts, plot.Tick{Value: nines(v), Label: "p" + pc})
		}
		return ts
	})
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	for _, c := range curves {
		xys := make(plotter.XYs, 0, len(c.Curve))
		for j, d := range c.Curve {
			if j >= len(CurvePercentiles) || d <= 0 {
				continue
			}
			xys = append(xys, plotter.XY{X: nines(CurvePercentiles[j]), Y: float64(d) / float64(time.Millisecond)})
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("bench: plot %s: %w", c.Name, err)
		}
		style(l, nil, c.Colour, c.Dashed)
		p.Add(l)
		p.Legend.Add(c.Name, l)
	}
	return save(p, path)
}

// nines maps a percentile to 1/(1-q): p50 → 2, p90 → 10, p99 → 100, ...
func nines(percentile float64) float64 { return 1 / (1 - percentile/100) }

// PlotTimeline draws a failover run's operations per second over time,
// with a vertical mark at each leader kill.
func PlotTimeline(path, title string, res *FailoverResult) error {
	if len(res.Timeline) == 0 {
		return errors.New("bench: plot: empty timeline")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the start"
	p.Y.Label.Text = fmt.Sprintf("operations per second (%s buckets)", res.Bucket)
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	per := res.Bucket.Seconds()
	xys := make(plotter.XYs, 0, 2*len(res.Timeline))
	top := 0.0
	for i, n := range res.Timeline {
		// A step: flat over each bucket.
		y := float64(n) / per
		xys = append(xys, plotter.XY{X: float64(i) * per, Y: y}, plotter.XY{X: float64(i+1) * per, Y: y})
		top = math.Max(top, y)
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("bench: plot timeline: %w", err)
	}
	style(l, nil, 0, false)
	p.Add(l)
	p.Legend.Add("completed operations", l)
	top = math.Max(top*1.05, 1)
	p.Y.Max = top
	for i, k := range res.Kills {
		x := k.At.Seconds()
		m, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
		if err != nil {
			return fmt.Errorf("bench: plot timeline: %w", err)
		}
		m.LineStyle.Color = color.RGBA{R: 200, A: 255}
		m.LineStyle.Width = vg.Points(1)
		m.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(m)
		if i == 0 {
			p.Legend.Add("leader killed (SIGKILL)", m)
		}
	}
	p.Legend.Top = true
	return save(p, path)
}

// style gives series i its colour, and dashes when asked.
func style(l *plotter.Line, pts *plotter.Scatter, i int, dashed bool) {
	l.LineStyle.Color = plotutil.Color(i)
	l.LineStyle.Width = vg.Points(1.5)
	if dashed {
		l.LineStyle.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	if pts != nil {
		pts.Color = plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
	}
}

// save writes p to path, creating its directory.
func save(p *plot.Plot, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := p.Save(ChartWidth, ChartHeight, path); err != nil {
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	return nil
}

// MatrixCharts writes the charts of a matrix run into dir: throughput
// against workers for every transport and mode
// (throughput-<mode>.<ext>), and, per transport and mode, the latency
// curves at each worker count, with the echo baseline's beside them when
// it ran (latency-<transport>-<mode>.<ext>). It returns the files
// written.
func MatrixCharts(dir, ext string, rows []MatrixRow) ([]string, error) {
	var files []string
	byMode := map[Mode][]Series{}
	colours := map[Mode]int{}
	var modes []Mode
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j].Transport == rows[i].Transport && rows[j].Mode == rows[i].Mode {
			j++
		}
		group := rows[i:j]
		tr, mode := group[0].Transport, group[0].Mode
		if _, ok := byMode[mode]; !ok {
			modes = append(modes, mode)
		}
		col := colours[mode] // one colour per transport, its echo dashed
		colours[mode]++
		s := Series{Name: tr, Colour: col}
		e := Series{Name: tr + " echo", Dashed: true, Colour: col}
		var curves []CurveSeries
		for k, r := range group {
			s.Workers = append(s.Workers, r.Workers)
			s.OpsPerS = append(s.OpsPerS, r.Result.Throughput)
			curves = append(curves, CurveSeries{Name: fmt.Sprintf("dflockd, %d workers", r.Workers), Curve: r.Result.Latency.Curve, Colour: k})
			if r.Baseline != nil {
				e.Workers = append(e.Workers, r.Workers)
				e.OpsPerS = append(e.OpsPerS, r.Baseline.Echo.Throughput)
				curves = append(curves, CurveSeries{Name: fmt.Sprintf("echo, %d workers", r.Workers), Curve: r.Baseline.Echo.Latency.Curve, Dashed: true, Colour: k})
			}
		}
		byMode[mode] = append(byMode[mode], s)
		if len(e.Workers) > 0 {
			byMode[mode] = append(byMode[mode], e)
		}
		f := filepath.Join(dir, fmt.Sprintf("latency-%s-%s.%s", tr, mode, ext))
		if err := PlotLatency(f, fmt.Sprintf("%s %s: latency percentiles", tr, mode), curves); err != nil {
			return files, err
		}
		files = append(files, f)
		i = j
	}
	for _, m := range modes {
		f := filepath.Join(dir, fmt.Sprintf("throughput-%s.%s", m, ext))
		if err := PlotThroughput(f, fmt.Sprintf("%s: throughput against workers", m), byMode[m]); err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}
