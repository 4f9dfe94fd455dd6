package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one run. For ModeSignal, Ops counts delivered
// frames and the latency is from publish to delivery.
type Result struct {
	Mode        Mode          `json:"mode"`
	Transport   string        `json:"transport"`
	Workers     int           `json:"workers"`
	Rounds      int           `json:"rounds"`
	Warmup      int           `json:"warmup"`
	Connections int           `json:"connections"`
	Pipeline    int           `json:"pipeline"`
	KeyDesc     string        `json:"key"`
	SharedKey   bool          `json:"shared_key"`
	Ops         int64         `json:"ops"`
	Wall        time.Duration `json:"wall_ns"`
	Throughput  float64       `json:"ops_per_sec"`
	Latency     Latency       `json:"latency"`
	// Signal mode only.
	Listeners int   `json:"listeners,omitempty"`
	Published int64 `json:"published,omitempty"`
	Expected  int64 `json:"expected_frames,omitempty"`
}

// WorkerError is the error of a run that one worker aborted; it prints as
// §10's "worker N error: …".
type WorkerError struct {
	Worker int
	Err    error
}

func (e *WorkerError) Error() string { return fmt.Sprintf("worker %d error: %v", e.Worker, e.Err) }

// Unwrap returns the worker's error.
func (e *WorkerError) Unwrap() error { return e.Err }

// Run performs one benchmark run. It returns a *WorkerError when a worker
// met an error or an unexpected answer (a timeout included): the run is
// then aborted, as in 1.x.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Mode == ModeSignal {
		return runSignal(ctx, cfg)
	}
	return runWorkers(ctx, cfg, specs[cfg.Mode], nil)
}

// runWorkers runs cfg.Workers workers doing spec, calling onStart (when
// set) just before the timed part begins.
func runWorkers(ctx context.Context, cfg Config, spec opSpec, onStart func()) (*Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	shared := &sharedState{dialing: make(chan struct{}, maxDialing)}
	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = newWorker(i, &cfg, spec, shared)
	}

	var ready, finished sync.WaitGroup
	start := make(chan struct{})
	var progress atomic.Int64
	errs := make([]error, cfg.Workers)
	ends := make([]time.Time, cfg.Workers)
	ready.Add(cfg.Workers)
	finished.Add(cfg.Workers)
	for i, w := range workers {
		w.progress = &progress
		go func() {
			defer finished.Done()
			isReady := false
			markReady := func() {
				if !isReady {
					isReady = true
					ready.Done()
				}
			}
			defer markReady()
			err := w.run(ctx, cfg.Warmup, markReady, start)
			ends[i] = time.Now()
			if err != nil {
				errs[i] = &WorkerError{Worker: i, Err: err}
				cancel(errs[i])
			}
		}()
	}

	ready.Wait()
	var t0 time.Time
	stopProgress := func() {}
	if ctx.Err() == nil {
		if onStart != nil {
			onStart()
		}
		t0 = time.Now()
		total := int64(cfg.Workers) * int64(cfg.Rounds)
		stopProgress = reportProgress(cfg.Progress, &progress, total)
	}
	close(start)
	finished.Wait()
	stopProgress()
	for _, w := range workers {
		w.close()
	}
	if err := firstError(ctx, errs); err != nil {
		return nil, err
	}

	rec := newRecorder()
	var end time.Time
	for i, w := range workers {
		rec.merge(w.rec)
		if ends[i].After(end) {
			end = ends[i]
		}
	}
	res := newResult(cfg)
	res.Ops = rec.n
	res.Wall = end.Sub(t0)
	if res.Wall > 0 {
		res.Throughput = float64(res.Ops) / res.Wall.Seconds()
	}
	res.Latency = rec.summary()
	return res, nil
}

// firstError returns the worker error that aborted the run, preferring a
// real failure over the cancellations it caused in other workers.
func firstError(ctx context.Context, errs []error) error {
	if cause := context.Cause(ctx); cause != nil {
		var we *WorkerError
		if errors.As(cause, &we) {
			return we
		}
		return fmt.Errorf("bench: %w", cause)
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// newResult fills the descriptive fields of a Result.
func newResult(cfg Config) *Result {
	return &Result{
		Mode:        cfg.Mode,
		Transport:   cfg.Servers[0].Transport,
		Workers:     cfg.Workers,
		Rounds:      cfg.Rounds,
		Warmup:      cfg.Warmup,
		Connections: cfg.Connections,
		Pipeline:    cfg.Pipeline,
		KeyDesc:     keyDesc(cfg),
		SharedKey:   cfg.SharedKey,
	}
}

// keyDesc renders the key scheme for the report header.
func keyDesc(cfg Config) string {
	switch {
	case cfg.Mode == ModeSignal:
		return cfg.Key
	case cfg.SharedKey:
		return cfg.Key
	case cfg.Pipeline > 1:
		return cfg.Key + "_<id>_<slot>"
	}
	return cfg.Key + "_<id>"
}

// reportProgress calls fn about five times a second with the count so
// far, until the returned stop function is called (which reports once
// more and waits for the reporter to end).
func reportProgress(fn func(done, total int64), done *atomic.Int64, total int64) (stop func()) {
	if fn == nil {
		return func() {}
	}
	quit := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(done.Load(), total)
			case <-quit:
				fn(done.Load(), total)
				return
			}
		}
	}()
	return func() { close(quit); <-exited }
}
