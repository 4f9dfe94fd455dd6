package core

import (
	"fmt"
	"strconv"
	"testing"
)

// discardSub accepts every frame.
type discardSub struct{ n int }

func (d *discardSub) Deliver([]byte) bool { d.n++; return true }
func (d *discardSub) Evict()              {}

// loadedEngine registers n subscriptions on prefixes no benchmark channel
// uses: a mix of literal patterns, '*' patterns, '>' patterns and queue
// groups, spread over n/4 subscribers.
func loadedEngine(b *testing.B, n int) *Engine {
	b.Helper()
	e := New(Options{})
	subs := make([]*discardSub, max(n/4, 1))
	for i := range subs {
		subs[i] = new(discardSub)
	}
	for i := 0; i < n; i++ {
		s := subs[i%len(subs)]
		var p, g string
		switch i % 4 {
		case 0:
			p = "svc." + strconv.Itoa(i) + ".events"
		case 1:
			p = "svc." + strconv.Itoa(i) + ".*"
		case 2:
			p = "tenant." + strconv.Itoa(i) + ".>"
		case 3:
			p, g = "jobs."+strconv.Itoa(i), "workers"
		}
		if _, err := e.Subscribe(s, p, g); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// BenchmarkSignalNoMatch publishes to a channel nobody listens on.
func BenchmarkSignalNoMatch(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			e := loadedEngine(b, n)
			const ch = "orders.eu.created"
			frame := sigFrame(ch, "payload")
			b.ReportAllocs()
			for b.Loop() {
				if e.Signal(ch, frame) != 0 {
					b.Fatal("unexpected receiver")
				}
			}
		})
	}
}

// BenchmarkSignalNoMatchParallel publishes to channels nobody listens on
// from every P, with 100,000 subscriptions registered.
func BenchmarkSignalNoMatchParallel(b *testing.B) {
	e := loadedEngine(b, 100_000)
	chans := []string{"orders.eu.created", "orders.us.created", "audit.login", "metrics.cpu.0"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ch := chans[i&3]
			i++
			if e.Signal(ch, nil) != 0 {
				panic("unexpected receiver")
			}
		}
	})
}

// BenchmarkMatchWildcard10k publishes to a channel matching one of 10,000
// wildcard patterns (one discard subscriber each). "cached" repeats the
// channel; "uncached" invalidates the match cache before every signal, so
// each one walks the trie and refills a cache line.
func BenchmarkMatchWildcard10k(b *testing.B) {
	setup := func(b *testing.B) *Engine {
		e := New(Options{})
		for i := 0; i < 10_000; i++ {
			p := "m." + strconv.Itoa(i) + ".*"
			if i%2 == 1 {
				p = "m." + strconv.Itoa(i) + ".>"
			}
			if _, err := e.Subscribe(new(discardSub), p, ""); err != nil {
				b.Fatal(err)
			}
		}
		return e
	}
	const ch = "m.4242.x"
	frame := sigFrame(ch, "payload")
	b.Run("cached", func(b *testing.B) {
		e := setup(b)
		b.ReportAllocs()
		for b.Loop() {
			if e.Signal(ch, frame) != 1 {
				b.Fatal("want one receiver")
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		e := setup(b)
		b.ReportAllocs()
		for b.Loop() {
			e.subs.gen.Add(1) // what any wildcard Subscribe/Unsubscribe does
			if e.Signal(ch, frame) != 1 {
				b.Fatal("want one receiver")
			}
		}
	})
	b.Run("distinct-channels", func(b *testing.B) {
		e := setup(b)
		chans := make([]string, 10_000)
		for i := range chans {
			chans[i] = "m." + strconv.Itoa(i) + ".x"
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if e.Signal(chans[i], frame) != 1 {
				b.Fatal("want one receiver")
			}
			if i++; i == len(chans) {
				i = 0
			}
		}
	})
}

// BenchmarkSignalFanout delivers to n plain subscribers of one exact
// channel; "dedup" adds a matching wildcard subscription for each of them
// (and a queue group), so every signal also runs the duplicate check.
func BenchmarkSignalFanout(b *testing.B) {
	for _, n := range []int{1, 100} {
		for _, dedup := range []bool{false, true} {
			name := fmt.Sprintf("subs=%d", n)
			if dedup {
				name += "/dedup"
			}
			b.Run(name, func(b *testing.B) {
				e := New(Options{})
				for i := 0; i < n; i++ {
					s := new(discardSub)
					if _, err := e.Subscribe(s, "fan.out", ""); err != nil {
						b.Fatal(err)
					}
					if dedup {
						if _, err := e.Subscribe(s, "fan.*", ""); err != nil {
							b.Fatal(err)
						}
						if _, err := e.Subscribe(s, "fan.>", "g"); err != nil {
							b.Fatal(err)
						}
					}
				}
				want := n
				if dedup {
					want++ // the group
				}
				frame := sigFrame("fan.out", "payload")
				b.ReportAllocs()
				for b.Loop() {
					if got := e.Signal("fan.out", frame); got != want {
						b.Fatalf("receivers %d, want %d", got, want)
					}
				}
			})
		}
	}
}
