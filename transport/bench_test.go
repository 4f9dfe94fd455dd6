package transport_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// BenchmarkEchoRoundTrip measures one 20-byte request and its 20-byte echo
// over an established conn of every registered transport, about the size
// of a dflockd command and reply.
func BenchmarkEchoRoundTrip(b *testing.B) {
	all := setups(b)
	for _, name := range transport.Names() {
		b.Run(name, func(b *testing.B) {
			s, ok := all[name]
			if !ok {
				b.Fatalf("transport %q has no setup", name)
			}
			benchEcho(b, name, s)
		})
	}
}

func benchEcho(b *testing.B, name string, s conformanceSetup) {
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	l, err := transport.Listen(ctx, transport.Endpoint{Transport: name, Addr: s.addr}, s.listenOpts)
	if errors.Is(err, transport.ErrDisabled) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 20)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		l.Close()
		<-served
	}()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: name, Addr: l.Addr().String()}, s.dialOpts)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	req := []byte("l\nbench-key-001\n10\n\n")
	if len(req) != 20 {
		b.Fatalf("request is %d bytes, want 20", len(req))
	}
	resp := make([]byte, 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
	}
}
