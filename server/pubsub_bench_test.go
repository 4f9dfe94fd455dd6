package server

import (
	"bufio"
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Pub/sub fan-out over loopback TCP (§4.3, §4.4). One op is one `signal`;
// the reported frames/s counts frames read by the listeners (ops ×
// listeners per second). Allocations are those of the whole process
// (client and server).

const (
	fanoutBatch = 64 // signal requests per write
	// fanoutWindow bounds how many frames a listener may lag behind the
	// publisher. 2048 frames of 36 bytes stay far below the default push
	// queue (1 MiB), so however the goroutines are scheduled no listener is
	// evicted as a slow consumer.
	fanoutWindow = 2048
)

// BenchmarkSignalFanoutTCP: one publisher connection pipelines `signal`
// requests (64 per write; a goroutine reads the `ok N` answers) to
// listeners that read frames as fast as they can.
func BenchmarkSignalFanoutTCP(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, listeners int) {
	ts := start(b, Options{ReadTimeout: time.Hour}, core.Options{})

	recv := make([]atomic.Int64, listeners) // frames read per listener
	poke := make(chan struct{}, 1)          // "some listener read something"
	var readErr atomic.Pointer[error]
	for i := range recv {
		w, err := dialPS(ts.Addr)
		if err != nil {
			b.Fatal(err)
		}
		defer w.close()
		if line, err := w.do("listen", "bench", ""); err != nil || line != "ok" {
			b.Fatalf("listen = %q, %v", line, err)
		}
		_ = w.conn.SetReadDeadline(time.Time{})
		go func() {
			r := bufio.NewReaderSize(w.conn, 64<<10)
			buf := make([]byte, 64<<10)
			for {
				n, err := r.Read(buf)
				if n > 0 {
					recv[i].Add(int64(bytes.Count(buf[:n], []byte{'\n'})))
					select {
					case poke <- struct{}{}:
					default:
					}
				}
				if err != nil {
					readErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	// slowest returns the frame count of the listener furthest behind.
	slowest := func() int64 {
		m := recv[0].Load()
		for i := 1; i < len(recv); i++ {
			m = min(m, recv[i].Load())
		}
		return m
	}
	// waitFor blocks until every listener has read at least n frames.
	waitFor := func(n int64) error {
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		for slowest() < n {
			select {
			case <-poke:
			case <-t.C:
				if p := readErr.Load(); p != nil {
					return *p
				}
				return fmt.Errorf("listeners stuck at %d of %d frames", slowest(), n)
			}
		}
		return nil
	}

	pub, err := dialPS(ts.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.close()
	req := []byte("signal\nbench\n0123456789abcdef\n")
	batch := bytes.Repeat(req, fanoutBatch)
	want := fmt.Sprintf("ok %d", listeners)
	answers := make(chan error, 1)

	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			_ = pub.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := pub.r.ReadSlice('\n')
			if err != nil {
				answers <- err
				return
			}
			if string(line[:len(line)-1]) != want {
				answers <- fmt.Errorf("signal %d answered %q; want %q (listener evicted?)", i, line, want)
				return
			}
		}
		answers <- nil
	}()
	for sent := 0; sent < b.N; {
		k := min(fanoutBatch, b.N-sent)
		if err := waitFor(int64(sent + k - fanoutWindow)); err != nil {
			b.Fatal(err)
		}
		if _, err := pub.conn.Write(batch[:k*len(req)]); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	if err := <-answers; err != nil {
		b.Fatal(err)
	}
	if err := waitFor(int64(b.N)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if p := readErr.Load(); p != nil {
		b.Fatalf("listener: %v", *p)
	}
	for i := range recv {
		if n := recv[i].Load(); n != int64(b.N) {
			b.Fatalf("listener %d read %d frames; want %d", i, n, b.N)
		}
	}
	b.ReportMetric(float64(b.N)*float64(listeners)/b.Elapsed().Seconds(), "frames/s")
}
