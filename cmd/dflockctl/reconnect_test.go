package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dflockd/dflockd/client"
	"github.com/dflockd/dflockd/internal/faultproxy"
	"github.com/dflockd/dflockd/server"
)

// TestLockRidesThroughCut: dflockctl lock keeps the lock through cuts of
// its connection (it resumes its session): the command runs to its end
// undisturbed, nobody else gets the lock meanwhile — not even past
// several leases — and it is released afterwards.
func TestLockRidesThroughCut(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, server.Options{})
	proxy, err := faultproxy.Listen(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	dir := t.TempDir()
	p := start(t, nil, "--server", proxy.Addr(), "lock", "--ttl", "1", "cut", "--",
		"sh", "-c", `touch "$1/started"; `+waitForGo+`; exit 5`, "sh", dir)
	eventually(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })
	other := ts.dial(t)
	ctx := testCtx(t)
	ki, err := other.Inspect(ctx, "cut", false)
	if err != nil || len(ki.Holders) != 1 {
		t.Fatalf("inspect %+v, %v", ki, err)
	}
	fence := ki.Holders[0].Fence

	for i := range 2 {
		if n := proxy.CutAll(); n != 1 {
			t.Fatalf("cut %d: %d connections cut; want dflockctl's", i, n)
		}
		eventually(t, "dflockctl to reconnect", func() bool { return len(proxy.Conns()) == 1 })
	}
	// Past two leases of 1s, the lock is still dflockctl's, same fence.
	until := time.Now().Add(2 * time.Second)
	for time.Now().Before(until) {
		if _, _, err := other.Acquire(ctx, "cut", 0); !errors.Is(err, client.ErrTimeout) {
			t.Fatalf("try-lock during the cuts: %v; want ErrTimeout", err)
		}
		ki, err := other.Inspect(ctx, "cut", false)
		if err != nil || len(ki.Holders) != 1 || ki.Holders[0].Fence != fence {
			t.Fatalf("inspect %+v, %v; want the fence %d", ki, err, fence)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 5 {
		t.Fatalf("exit %d, want the command's 5; stderr:\n%s", code, p.stderr.String())
	}
	if lockHeld(ts.stats(t, other), "cut") {
		t.Fatal("lock held after the command exited")
	}
	// bye is answered before the session ends: allow it a moment.
	eventually(t, "the session to end", func() bool {
		st := ts.stats(t, other)
		return st.Sessions == 0 && st.DetachedSessions == 0
	})
}
