package core

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAcquireReleaseUncontended measures the hot path: one owner, one
// existing key, acquire then release.
func BenchmarkAcquireReleaseUncontended(b *testing.B) {
	e := New(Options{})
	o := NewOwner(1)
	opt := AcquireOptions{TTL: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		l, _, err := e.Acquire(o, KindLock, "bench", opt)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Release(o, KindLock, "bench", l.Token.String()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireReleaseParallel runs the hot path on one key per
// goroutine.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	e := New(Options{MaxKeys: 1 << 20})
	var id atomic.Uint64
	opt := AcquireOptions{TTL: time.Minute}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := id.Add(1)
		o := NewOwner(n)
		key := "bench-" + strconv.FormatUint(n, 10)
		for pb.Next() {
			l, _, err := e.Acquire(o, KindLock, key, opt)
			if err != nil {
				b.Error(err)
				return
			}
			if err := e.Release(o, KindLock, key, l.Token.String()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHandOffContended has every goroutine wait for the one key: each
// op is a blocking acquire that is granted by another goroutine's release.
func BenchmarkHandOffContended(b *testing.B) {
	e := New(Options{})
	var id atomic.Uint64
	opt := AcquireOptions{TTL: time.Minute}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		o := NewOwner(id.Add(1))
		for pb.Next() {
			l, err := e.Lock(context.Background(), o, KindLock, "hot", time.Minute, opt)
			if err != nil {
				b.Error(err)
				return
			}
			if err := e.Release(o, KindLock, "hot", l.Token.String()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHeldLockFootprint reports the live heap per held lock (key of
// at most 16 bytes, one owner holding them all), the engine's share of a
// server's memory per lock. It is a size measurement, so it reports the
// "bytes/lock" metric rather than a time.
func BenchmarkHeldLockFootprint(b *testing.B) {
	const n = 200_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "m" + strconv.Itoa(i)
	}
	opt := AcquireOptions{TTL: time.Hour}
	for b.Loop() {
		b.StopTimer()
		e := New(Options{MaxKeys: n})
		o := NewOwner(1)
		before := liveHeap()
		b.StartTimer()
		for _, k := range keys {
			// The server allocates each key from the request; do the same.
			if _, _, err := e.Acquire(o, KindLock, string([]byte(k)), opt); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(liveHeap()-before)/n, "bytes/lock")
		runtime.KeepAlive(e)
		runtime.KeepAlive(o)
		b.StartTimer()
	}
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
