package core

import (
	"context"
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
