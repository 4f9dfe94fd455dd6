package client

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConnSession: naming a session, keeping what a closed connection
// held, resuming it (counts), bye, and the refusals, over every transport.
func TestConnSession(t *testing.T) {
	for _, name := range transports {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, name, serverConfig{})
			ctx := ctxT(t)
			c := ts.dial(t)
			s, err := c.Session(ctx, 0)
			if err != nil {
				t.Fatalf("Session: %v", err)
			}
			if len(s.ID) != 16 || len(s.Secret) != 32 || s.TTL != 15*time.Second {
				t.Fatalf("Session = %+v; want 16 and 32 hex digits, the default 15s", s)
			}
			if strings.Contains(s.String(), s.Secret) {
				t.Fatalf("String() shows the secret: %s", s)
			}
			s2, err := c.Session(ctx, 1500*time.Millisecond)
			if err != nil || s2.ID != s.ID || s2.Secret != s.Secret || s2.TTL != 2*time.Second {
				t.Fatalf("Session again = %+v, %v; want the same ids and 2s", s2, err)
			}
			tok, _, err := c.Acquire(ctx, "k", 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := c.Enqueue(ctx, "q"); err != nil {
				t.Fatal(err)
			}
			c.Close() // no bye: the session is detached
			obs := ts.dial(t)
			eventually(t, "the session to be detached", func() bool {
				st, err := obs.Stats(ctx)
				return err == nil && st.DetachedSessions == 1
			})
			if !held(t, obs, "k") {
				t.Fatal("lock released with its connection; the session should keep it")
			}

			c2 := ts.dial(t)
			if _, _, err := c2.Resume(ctx, s.ID, strings.Repeat("0", 32)); !errors.Is(err, ErrSessionGone) {
				t.Fatalf("Resume with a wrong secret = %v; want ErrSessionGone", err)
			}
			h, q, err := c2.Resume(ctx, s.ID, s.Secret)
			if err != nil || h != 2 || q != 0 {
				t.Fatalf("Resume = %d, %d, %v; want 2 held (k, and q granted at once), 0 queued", h, q, err)
			}
			if err := c2.Release(ctx, "k", tok); err != nil {
				t.Fatalf("Release after resume: %v", err)
			}
			if err := c2.Bye(ctx); err != nil {
				t.Fatalf("Bye: %v", err)
			}
			if err := c2.Ping(ctx); !errors.Is(err, ErrClosed) {
				t.Fatalf("Ping after Bye = %v; want ErrClosed", err)
			}
			eventually(t, "bye to end the session and free q", func() bool {
				st, err := obs.Stats(ctx)
				return err == nil && st.Sessions == 0 && st.DetachedSessions == 0 && len(st.Locks) == 0
			})
			c3 := ts.dial(t)
			if _, _, err := c3.Resume(ctx, s.ID, s.Secret); !errors.Is(err, ErrSessionGone) {
				t.Fatalf("Resume after bye = %v; want ErrSessionGone", err)
			}
			// A connection that holds something cannot resume: plain error.
			if _, _, err := c3.Acquire(ctx, "other", 0); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c3.Resume(ctx, s.ID, s.Secret); !errors.Is(err, ErrServer) || errors.Is(err, ErrSessionGone) {
				t.Fatalf("Resume while holding = %v; want ErrServer", err)
			}
			if _, _, err := c3.Resume(ctx, "XYZ", s.Secret); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Resume with a bad id = %v; want ErrInvalid", err)
			}
			if _, err := c3.Session(ctx, -time.Second); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Session(-1s) = %v; want ErrInvalid", err)
			}
		})
	}
}

// TestConnSessionReplies: a server without the extension (answering
// `error`) yields ErrUnsupported and leaves the Conn usable; malformed
// answers are ErrServer; error_session is ErrSessionGone.
func TestConnSessionReplies(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	old := fakeServer(t, map[string][]string{"session": {"error"}, "bye": {"error"}, "ping": {"ok"}})
	c, err := Dial(ctx, old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Session(ctx, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Session answered error = %v; want ErrUnsupported", err)
	}
	if err := c.Bye(ctx); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Bye answered error = %v; want ErrUnsupported", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after unsupported requests: %v", err)
	}

	for _, bad := range []string{
		"ok",
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef",       // no ttl
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 0",     // ttl 0
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 15 x",  // extra
		"ok 0123456789ABCDEF 0123456789abcdef0123456789abcdef 15",    // upper case
		"ok 0123456789abcdef 0123456789abcdef 15",                    // short secret
		"ok 0123456789abcdef 0123456789abcdef0123456789abcdef 99999", // more than asked
		"ok 0123456789abcdef  0123456789abcdef0123456789abcdef 15",   // two spaces
	} {
		addr := fakeServer(t, map[string][]string{"session": {bad}, "ping": {"ok"}})
		c, err := Dial(ctx, addr, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if s, err := c.Session(ctx, 30*time.Second); !errors.Is(err, ErrServer) || errors.Is(err, ErrUnsupported) {
			t.Errorf("Session answered %q = %+v, %v; want ErrServer", bad, s, err)
		}
		c.Close()
	}
	for _, bad := range []string{"ok", "ok 1", "ok 1 0 0", "ok -1 0", "ok 01 0", "ok a b", "queued"} {
		addr := fakeServer(t, map[string][]string{"resume": {bad}})
		c, err := Dial(ctx, addr, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if h, q, err := c.Resume(ctx, "0123456789abcdef", "0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrServer) {
			t.Errorf("Resume answered %q = %d, %d, %v; want ErrServer", bad, h, q, err)
		}
		c.Close()
	}
	addr := fakeServer(t, map[string][]string{"resume": {"error_session", "ok 3 99999999999", "ok 3 1"}})
	c2, err := Dial(ctx, addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, _, err := c2.Resume(ctx, "0123456789abcdef", "0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("Resume answered error_session = %v; want ErrSessionGone", err)
	}
	// The scripted answers that follow are read by the next calls.
	if h, q, err := c2.Resume(ctx, "0123456789abcdef", "0123456789abcdef0123456789abcdef"); !errors.Is(err, ErrServer) {
		t.Fatalf("Resume answered ok 3 99999999999 = %d, %d, %v; want ErrServer", h, q, err)
	}
	if h, q, err := c2.Resume(ctx, "0123456789abcdef", "0123456789abcdef0123456789abcdef"); err != nil || h != 3 || q != 1 {
		t.Fatalf("Resume answered ok 3 1 = %d, %d, %v", h, q, err)
	}
}

// TestLockSessionFallback: against a server that answers `error` to
// session (1.x), Lock works as in 1.x, and asks only once per Lock.
func TestLockSessionFallback(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	addr, verbs := fakeServerLog(t, map[string][]string{
		"session": {"error"},
		"l":       {"ok 0123456789abcdef0123456789abcdef 30"},
		"r":       {"ok"},
		"bye":     {"error"},
	})
	l := &Lock{Key: "k", Servers: []string{addr}}
	for range 2 {
		if ok, err := l.Acquire(ctx); !ok || err != nil {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		if l.Token() != "0123456789abcdef0123456789abcdef" {
			t.Fatalf("Token = %q", l.Token())
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
	want := []string{"session", "l", "r", "l", "r"}
	eventually(t, "the requests to arrive", func() bool { return len(verbs()) >= len(want) })
	if got := verbs(); !slices.Equal(got, want) {
		t.Fatalf("requests %q; want %q (session asked once, then never; no bye)", got, want)
	}
}
