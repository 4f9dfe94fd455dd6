package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// The checks of a failover run, fed with records a broken cluster would
// produce.
func TestFailoverChecks(t *testing.T) {
	t0 := time.Now()
	worker := func(id int, orphans int64, fences ...uint64) *failoverWorker {
		w := &failoverWorker{id: id, rec: newRecorder(), fences: fences, orphans: orphans}
		for range fences {
			w.rec.record(time.Millisecond)
			w.ops = append(w.ops, opRecord{sent: 0, granted: time.Millisecond, done: t0.Add(time.Millisecond)})
		}
		return w
	}
	cases := []struct {
		name     string
		workers  []*failoverWorker
		f0, fEnd uint64
		ok       bool
	}{
		{"sound", []*failoverWorker{worker(0, 0, 2, 4), worker(1, 0, 3, 5)}, 1, 6, true},
		{"lost answers explain the missing grants", []*failoverWorker{worker(0, 1, 2, 4), worker(1, 0, 3, 5)}, 1, 7, true},
		{"a fence handed out twice", []*failoverWorker{worker(0, 0, 2, 4), worker(1, 0, 3, 4)}, 1, 6, false},
		{"a fence that went back", []*failoverWorker{worker(0, 0, 4, 2), worker(1, 0, 3, 5)}, 1, 6, false},
		{"a grant nobody explains (an acquire applied twice)", []*failoverWorker{worker(0, 0, 2, 4), worker(1, 0, 3, 5)}, 1, 7, false},
		{"a fence the cluster does not account for", []*failoverWorker{worker(0, 0, 2, 4), worker(1, 0, 3, 9)}, 1, 6, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := &FailoverResult{Bucket: 100 * time.Millisecond, Wall: time.Second}
			err := res.tally(c.workers, t0, c.f0, c.fEnd)
			if c.ok && err != nil {
				t.Fatal(err)
			}
			if !c.ok && !errors.Is(err, ErrFailoverCheck) {
				t.Fatalf("tally = %v, want %v", err, ErrFailoverCheck)
			}
			if c.ok && res.Ops != 4 {
				t.Fatalf("ops %d, want 4", res.Ops)
			}
		})
	}
}

// A worker that resumes its session after a drop compares what the
// session holds with what it believes.
func TestFailoverReconcile(t *testing.T) {
	cfg := Config{Mode: ModeLock, Workers: 1, Rounds: 1, Timeout: time.Second}.withDefaults()
	w := newFailoverWorker(0, &cfg, []transport.Endpoint{{Transport: "tcp", Addr: "127.0.0.1:1"}}, &sharedState{}, time.Minute, time.Now())

	// Holding nothing, yet the session holds a slot: a release answered
	// ok was lost.
	w.state = stIdle
	if err := w.reconcile(1, 0); !errors.Is(err, ErrFailoverCheck) {
		t.Fatalf("idle, resumed holding 1: %v, want %v", err, ErrFailoverCheck)
	}
	// A release in flight that was applied: the operation is done.
	w.state, w.opStart = stHolding, time.Now()
	if err := w.reconcile(0, 0); err != nil || w.state != stIdle || len(w.ops) != 1 {
		t.Fatalf("release applied: err %v, state %d, ops %d", err, w.state, len(w.ops))
	}
	// A release not applied: the worker still holds and releases again.
	w.state = stHolding
	if err := w.reconcile(1, 0); err != nil || w.state != stHolding {
		t.Fatalf("release not applied: err %v, state %d", err, w.state)
	}
	// An acquire that never reached the log is asked again.
	w.state = stAcquiring
	if err := w.reconcile(0, 0); err != nil || w.state != stIdle {
		t.Fatalf("acquire not applied: err %v, state %d", err, w.state)
	}
}

// A failover worker against a single in-memory node: it names a session,
// does operations, and a cancelled run ends it at once, its connection
// closed under it.
func TestFailoverWorkerCancel(t *testing.T) {
	l := local(t, "tcp", KindDflockd)
	cfg := Config{Mode: ModeLock, Workers: 1, Rounds: 1, Timeout: 5 * time.Second, Servers: []transport.Endpoint{l.Endpoint},
		Transport: l.Client}.withDefaults()
	w := newFailoverWorker(0, &cfg, cfg.Servers, &sharedState{}, 10*time.Second, time.Now())
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, stop) }()
	deadline := time.Now().Add(10 * time.Second)
	for w.nops.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not do three operations")
		}
		time.Sleep(5 * time.Millisecond)
	}
	errStop := errors.New("stop")
	cancel(errStop)
	select {
	case err := <-done:
		if !errors.Is(err, errStop) {
			t.Fatalf("run = %v, want the cancellation cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled worker did not return")
	}
	if len(w.ops) == 0 || w.sid == "" {
		t.Fatalf("ops %d, session %q: the worker did nothing", len(w.ops), w.sid)
	}
	for i := 1; i < len(w.fences); i++ {
		if w.fences[i] <= w.fences[i-1] {
			t.Fatalf("fences %v do not rise", w.fences)
		}
	}
}
