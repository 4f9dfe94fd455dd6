package bench

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: values are nanoseconds, from 100 ns to 2 minutes, at
// three significant digits (a recorded value is within 0.1% of the true
// one). Anything longer is clamped to the top.
const (
	histMin    = 100
	histMax    = int64(2 * time.Minute)
	histDigits = 3
)

// recorder collects one worker's latencies: an HDR histogram for the
// percentiles, and exact running sums (Welford) for mean and deviation.
// It is not safe for concurrent use; workers each own one and the run
// merges them at the end.
type recorder struct {
	h    *hdrhistogram.Histogram
	n    int64
	mean float64 // running mean, ns
	m2   float64 // sum of squared differences from the mean, ns²
	min  int64
	max  int64
}

func newRecorder() *recorder {
	return &recorder{h: hdrhistogram.New(histMin, histMax, histDigits), min: math.MaxInt64}
}

// record adds one latency.
func (r *recorder) record(d time.Duration) {
	v := int64(d)
	if v < histMin {
		v = histMin
	}
	_ = r.h.RecordValue(min(v, histMax))
	r.n++
	delta := float64(v) - r.mean
	r.mean += delta / float64(r.n)
	r.m2 += delta * (float64(v) - r.mean)
	r.min = min(r.min, v)
	r.max = max(r.max, v)
}

// merge folds o into r (Chan et al.'s parallel variance update).
func (r *recorder) merge(o *recorder) {
	if o.n == 0 {
		return
	}
	r.h.Merge(o.h)
	n := r.n + o.n
	delta := o.mean - r.mean
	r.m2 += o.m2 + delta*delta*float64(r.n)*float64(o.n)/float64(n)
	r.mean += delta * float64(o.n) / float64(n)
	r.n = n
	r.min = min(r.min, o.min)
	r.max = max(r.max, o.max)
}

// Latency summarises a run's latencies. Percentiles come from the HDR
// histogram (within 0.1%); the others are exact.
type Latency struct {
	Mean  time.Duration `json:"mean_ns"`
	Min   time.Duration `json:"min_ns"`
	Max   time.Duration `json:"max_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Stdev time.Duration `json:"stdev_ns"` // sample (n−1) standard deviation
	// Curve is the latency at CurvePercentiles, from the histogram: what
	// --plot draws.
	Curve []time.Duration `json:"curve_ns,omitempty"`
}

// CurvePercentiles are the percentiles of Latency.Curve: p50 to p99.99,
// evenly spaced in "nines" (p50 is 0.3 nines, p90 one, p99 two, ...).
var CurvePercentiles = func() []float64 {
	var ps []float64
	for n := 0.3; n < 4.0001; n += 0.1 {
		ps = append(ps, 100*(1-math.Pow(10, -n)))
	}
	ps[0] = 50
	return ps
}()

// summary returns the latency figures; all zero when nothing was recorded.
func (r *recorder) summary() Latency {
	if r.n == 0 {
		return Latency{}
	}
	var sd float64
	if r.n > 1 {
		sd = math.Sqrt(r.m2 / float64(r.n-1))
	}
	q := func(p float64) time.Duration { return time.Duration(r.h.ValueAtQuantile(p)) }
	curve := make([]time.Duration, len(CurvePercentiles))
	for i, p := range CurvePercentiles {
		curve[i] = q(p)
	}
	return Latency{
		Curve: curve,
		Mean:  time.Duration(r.mean),
		Min:   time.Duration(r.min),
		Max:   time.Duration(r.max),
		P50:   q(50),
		P90:   q(90),
		P99:   q(99),
		P999:  q(99.9),
		Stdev: time.Duration(sd),
	}
}
