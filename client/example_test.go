package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/core"
	"github.com/dflockd/dflockd/server"
	"github.com/dflockd/dflockd/transport"
)

// startServer runs an in-process dflockd server on a loopback port, so
// that the examples are self-contained. Real programs talk to a dflockd
// started on its own, e.g. at 127.0.0.1:6388.
func startServer() (addr string, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := server.New(server.Options{Engine: core.New(core.Options{})})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	return l.Addr().String(), func() { srv.Close(); <-done }
}

func ExampleLock() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	l := &client.Lock{Key: "my-resource", AcquireTimeout: 10 * time.Second, Servers: []string{addr}}
	ok, err := l.Acquire(ctx) // false = timed out; the lease renews itself until Release
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release(ctx)
	fmt.Println("acquired:", ok)

	// Someone else trying at the same time does not get it.
	other := &client.Lock{Key: "my-resource", AcquireTimeout: -1, Servers: []string{addr}}
	ok, err = other.Acquire(ctx)
	fmt.Println("second acquire:", ok, err)
	// Output:
	// acquired: true
	// second acquire: false <nil>
}

func ExampleLock_Enqueue() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	l := &client.Lock{Key: "batch", Servers: []string{addr}}
	status, err := l.Enqueue(ctx) // joins the queue without blocking
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueue:", status)
	// ... do other work, then block for the lock:
	ok, err := l.Wait(ctx, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held:", ok)
	if err := l.Release(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// enqueue: acquired
	// held: true
}

func ExampleLock_Lost() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	l := &client.Lock{Key: "leader", LeaseTTL: 30, Servers: []string{addr}}
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		log.Fatal("not acquired: ", err)
	}
	defer l.Release(ctx)

	work := time.After(10 * time.Millisecond)
	select {
	case <-l.Lost():
		fmt.Println("lease lost: stop working")
	case <-work:
		fmt.Println("work done while holding the lock")
	}
	// Output: work done while holding the lock
}

func ExampleSemaphore() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	var slots []*client.Semaphore
	for i := range 3 {
		s := &client.Semaphore{Key: "db-pool", Limit: 2, AcquireTimeout: -1, Servers: []string{addr}}
		ok, err := s.Acquire(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("worker %d got a slot: %v\n", i, ok)
		slots = append(slots, s)
	}
	for _, s := range slots {
		s.Release(ctx)
	}
	// Output:
	// worker 0 got a slot: true
	// worker 1 got a slot: true
	// worker 2 got a slot: false
}

func ExampleSignalConn() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	sc, err := client.NewSignalConn(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Listen(ctx, "jobs.>"); err != nil {
		log.Fatal(err)
	}

	pub, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	n, err := pub.Emit(ctx, "jobs.build", "commit 1a2b3c")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("receivers:", n)

	select {
	case sig := <-sc.Signals():
		fmt.Printf("%s: %s\n", sig.Channel, sig.Payload)
	case <-time.After(5 * time.Second):
		fmt.Println("no signal")
	}
	// Output:
	// receivers: 1
	// jobs.build: commit 1a2b3c
}

func ExampleDial() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	token, lease, err := c.Acquire(ctx, "report", 5*time.Second, client.WithLeaseTTL(60))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lease:", lease)
	if lease, err = c.Renew(ctx, "report", token, client.WithLeaseTTL(120)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("renewed:", lease)
	if err := c.Release(ctx, "report", token); err != nil {
		log.Fatal(err)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("locks held:", len(st.Locks))
	// Output:
	// lease: 60
	// renewed: 120
	// locks held: 0
}

// Servers can be given as endpoint URLs to pick the transport.
func ExampleDial_transports() {
	ctx := context.Background()
	var tlsConfig *tls.Config // e.g. with the server's CA in RootCAs

	for _, addr := range []string{
		"127.0.0.1:6388",           // TCP
		"tls://db1.example:6388",   // TLS
		"unix:///run/dflockd.sock", // Unix socket
		"quic://db1.example:6388",  // QUIC (TLS 1.3)
	} {
		c, err := client.Dial(ctx, addr, client.Options{TLS: tlsConfig, AuthToken: "s3cret"})
		if err != nil {
			log.Print(err)
			continue
		}
		c.Close()
	}
}

// Many sessions can share one QUIC connection, one stream each.
func ExampleOptions_quic() {
	ctx := context.Background()
	var tlsConfig *tls.Config // trusts the server's certificate

	sess, err := transport.DialQUIC(ctx, "db1.example:6388", transport.Options{TLS: tlsConfig})
	if err != nil {
		log.Fatal(err)
	}
	defer sess.Close() // ends every Conn on it; the server releases their locks

	for _, key := range []string{"a", "b", "c"} {
		c, err := client.Dial(ctx, "", client.Options{QUIC: sess})
		if err != nil {
			log.Fatal(err)
		}
		if _, _, err := c.Acquire(ctx, key, 10*time.Second); err != nil {
			log.Fatal(err)
		}
	}
}

func ExampleCRC32Shard() {
	servers := []string{"10.0.0.1:6388", "10.0.0.2:6388", "10.0.0.3:6388"}
	for _, key := range []string{"a", "b", "lock:1"} {
		fmt.Println(key, "->", servers[client.CRC32Shard(key, len(servers))])
	}
	// Output:
	// a -> 10.0.0.1:6388
	// b -> 10.0.0.3:6388
	// lock:1 -> 10.0.0.2:6388
}

func ExampleFenceFromToken() {
	fence, err := client.FenceFromToken("00000000000004d2a1b2c3d4e5f60718")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(fence)
	// Output: 1234
}

// A lock on a replicated cluster: the client finds the leader among the
// members and follows it through failovers, keeping the lock.
func ExampleLock_cluster() {
	ctx := context.Background()
	l := &client.Lock{
		Key:     "nightly-report",
		Cluster: []string{"10.0.0.1:6388", "10.0.0.2:6388", "10.0.0.3:6388"},
	}
	ok, err := l.Acquire(ctx)
	var nl *client.NoLeaderError
	switch {
	case errors.As(err, &nl):
		log.Printf("cluster down: %v (%d members answered)", err, nl.Reachable())
		return
	case errors.Is(err, client.ErrAuth):
		log.Fatal("wrong auth token")
	case err != nil:
		log.Fatal(err)
	case !ok:
		log.Print("busy: not acquired within 10s")
		return
	}
	defer l.Release(ctx)
	// ... work, watching l.Lost() ...
}

// Keys sharded over two clusters: each Servers entry lists one
// cluster's members.
func ExampleLock_shardedClusters() {
	l := &client.Lock{Key: "job-42", Servers: []string{
		"10.0.1.1:6388,10.0.1.2:6388,10.0.1.3:6388",
		"10.0.2.1:6388,10.0.2.2:6388,10.0.2.3:6388",
	}}
	_ = l
}
