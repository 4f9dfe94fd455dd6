package client

import (
	"testing"
)

// BenchmarkLockCycle measures one Lock.Acquire + Release against an
// in-process TCP server: dial, (session,) l, r, (bye,) close. It shows
// what naming a session adds to an acquisition.
func BenchmarkLockCycle(b *testing.B) {
	for _, tc := range []struct {
		name      string
		noSession bool
	}{{"session", false}, {"nosession", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ts := startServer(b, "tcp", serverConfig{})
			ctx := ctxT(b)
			l := &Lock{Key: "k", Servers: []string{ts.Addr}, NoSession: tc.noSession}
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := l.Acquire(ctx); !ok || err != nil {
					b.Fatalf("Acquire = %v, %v", ok, err)
				}
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
