package client

import (
	"errors"
	"testing"

	"github.com/dflockd/dflockd/auth"
	"github.com/dflockd/dflockd/server"
)

// Options.Name is sent after auth on every connection, Lock.Name too, and
// the server shows it in stats and inspect.
func TestConnName(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "tcp", serverConfig{server: server.Options{Auth: auth.Token("s3cret")}})
	ctx := ctxT(t)
	opts := ts.Opts()
	opts.AuthToken = "s3cret"
	opts.Name = "backup-job-7"
	c, err := Dial(ctx, ts.Addr, opts)
	if err != nil {
		t.Fatalf("Dial with a name: %v", err)
	}
	defer c.Close()
	st, err := c.Stats(ctx)
	if err != nil || len(st.Clients) != 1 || st.Clients[0].Name != "backup-job-7" || st.Clients[0].Identity != "token" {
		t.Fatalf("stats clients = %+v, %v", st, err)
	}

	l := &Lock{Key: "job", Servers: []string{ts.Addr}, AuthToken: "s3cret", Name: "host-12 worker"}
	if ok, err := l.Acquire(ctx); !ok || err != nil {
		t.Fatalf("Lock.Acquire = %v, %v", ok, err)
	}
	defer l.Release(ctx)
	ki, err := c.Inspect(ctx, "job", false)
	if err != nil {
		t.Fatal(err)
	}
	fence, _ := FenceFromToken(l.Token())
	if !ki.Exists || ki.Kind != "lock" || ki.Limit != 1 || len(ki.Holders) != 1 || len(ki.Waiters) != 0 ||
		ki.Holders[0].Name != "host-12 worker" || ki.Holders[0].Fence != fence || ki.Holders[0].Identity != "token" {
		t.Fatalf("Inspect = %+v", ki)
	}
	if ki, err := c.Inspect(ctx, "job", true); err != nil || ki.Exists || ki.Kind != "semaphore" || ki.Holders == nil {
		t.Fatalf("Inspect of the semaphore namespace = %+v, %v", ki, err)
	}
}

// A bad name fails locally, before anything is dialled.
func TestConnNameInvalid(t *testing.T) {
	t.Parallel()
	for _, n := range []string{" lead", "trail ", "caf\u00e9", "a\nb", string(make([]byte, 65))} {
		if _, err := Dial(ctxT(t), "127.0.0.1:1", Options{Name: n}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Dial with name %q: %v; want ErrInvalid", n, err)
		}
	}
}

// A 1.x server answers `error` to name, which Dial ignores, and to
// inspect, which is ErrUnsupported (and ErrServer).
func TestConnNameAndInspectOnOldServer(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	addr := fakeServer(t, map[string][]string{
		"name":    {"error"},
		"inspect": {"error"},
		"ping":    {"ok"},
	})
	c, err := Dial(ctx, addr, Options{Name: "backup-job-7"})
	if err != nil {
		t.Fatalf("Dial with a name to a 1.x server: %v", err)
	}
	defer c.Close()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after an ignored name: %v", err)
	}
	if _, err := c.Inspect(ctx, "job", false); !errors.Is(err, ErrUnsupported) || !errors.Is(err, ErrServer) {
		t.Fatalf("Inspect on a 1.x server: %v; want ErrUnsupported", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after inspect: %v", err)
	}
}
