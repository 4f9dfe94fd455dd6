package transport_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/transport"
)

// listenUnix listens on path with opts and closes the listener at the end
// of the test.
func listenUnix(t *testing.T, path string, opts transport.Options) net.Listener {
	t.Helper()
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "unix", Addr: path}, opts)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// checkServes dials path and checks that l accepts and echoes one byte.
func checkServes(t *testing.T, l net.Listener, path string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			done <- err
			return
		}
		_, err = c.Write(b)
		done <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "unix", Addr: path}, transport.Options{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'x' {
		t.Fatalf("echo: %q, %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func isSocket(t *testing.T, path string) bool {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	return fi.Mode().Type() == fs.ModeSocket
}

func TestUnixStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "s.sock")
	raw, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	raw.SetUnlinkOnClose(false)
	raw.Close()
	if !isSocket(t, path) {
		t.Fatal("setup: stale socket file is gone")
	}
	l := listenUnix(t, path, transport.Options{})
	checkServes(t, l, path)
}

func TestUnixLiveSocketRefused(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "s.sock")
	l := listenUnix(t, path, transport.Options{})
	accepted := make(chan struct{})
	go func() { // accept (and drop) the liveness probe
		defer close(accepted)
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	l2, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "unix", Addr: path}, transport.Options{})
	if err == nil {
		l2.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if !errors.Is(err, transport.ErrAddrInUse) {
		t.Errorf("second Listen = %v, want ErrAddrInUse", err)
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe never reached the live listener")
	}
	if !isSocket(t, path) {
		t.Fatal("the live socket file was removed")
	}
	checkServes(t, l, path)
}

func TestUnixNonSocketKept(t *testing.T) {
	dir := shortTempDir(t)
	file := filepath.Join(dir, "regular")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "subdir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, sub} {
		l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "unix", Addr: path}, transport.Options{})
		if err == nil {
			l.Close()
			t.Fatalf("Listen over %s succeeded", path)
		}
		if errors.Is(err, transport.ErrAddrInUse) || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over %s = %v, want a not-a-socket error", path, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("regular file after Listen: %q, %v", b, err)
	}
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		t.Errorf("directory after Listen: %v", err)
	}
}

func TestUnixSocketMode(t *testing.T) {
	dir := shortTempDir(t)
	for _, tt := range []struct {
		mode, want fs.FileMode
	}{
		{0, 0o660},
		{0o600, 0o600},
		{0o666, 0o666}, // wider than the umask would allow
	} {
		path := filepath.Join(dir, "m.sock")
		l := listenUnix(t, path, transport.Options{UnixMode: tt.mode})
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tt.want {
			t.Errorf("UnixMode %#o: socket mode %#o, want %#o", tt.mode, got, tt.want)
		}
		l.Close()
	}
}

func TestUnixRemovedOnClose(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "r.sock")
	l := listenUnix(t, path, transport.Options{})
	if !isSocket(t, path) {
		t.Fatal("no socket file after Listen")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
}

func TestUnixPeerCred(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "p.sock")
	l := listenUnix(t, path, transport.Options{})
	type result struct {
		cred transport.Cred
		err  error
	}
	got := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		pc, ok := c.(transport.PeerCreder)
		if !ok {
			got <- result{err: errors.New("accepted conn is not a PeerCreder")}
			return
		}
		cred, err := pc.PeerCred()
		got <- result{cred, err}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, transport.Endpoint{Transport: "unix", Addr: path}, transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	want := transport.Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	var r result
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no accepted conn")
	}
	dialed, dok := c.(transport.PeerCreder)
	if runtime.GOOS != "linux" {
		if r.err == nil {
			t.Errorf("PeerCred on %s succeeded", runtime.GOOS)
		}
		return
	}
	if r.err != nil {
		t.Fatalf("accepted PeerCred: %v", r.err)
	}
	if r.cred != want {
		t.Errorf("accepted PeerCred = %+v, want %+v", r.cred, want)
	}
	if !dok {
		t.Fatal("dialed conn is not a PeerCreder")
	}
	if cred, err := dialed.PeerCred(); err != nil || cred != want {
		t.Errorf("dialed PeerCred = %+v, %v; want %+v", cred, err, want)
	}
}

func TestUnixEndpoint(t *testing.T) {
	long := "/" + strings.Repeat("a", 106) // 107 bytes: the limit
	for _, tt := range []struct {
		in   string
		addr string // "" = must fail with ErrEndpoint
	}{
		{"unix:///run/dflockd.sock", "/run/dflockd.sock"},
		{"UNIX:///tmp/x.sock", "/tmp/x.sock"},
		{"unix://" + long, long},
		{"unix://" + long + "a", ""},
		{"unix://relative.sock", ""},
		{"unix://./x.sock", ""},
		{"unix://", ""},
		{"unix:///a\x00b", ""},
	} {
		e, err := transport.ParseEndpoint(tt.in)
		if tt.addr == "" {
			if !errors.Is(err, transport.ErrEndpoint) {
				t.Errorf("ParseEndpoint(%q) = %+v, %v; want ErrEndpoint", tt.in, e, err)
			}
			continue
		}
		if err != nil || e != (transport.Endpoint{Transport: "unix", Addr: tt.addr}) {
			t.Errorf("ParseEndpoint(%q) = %+v, %v", tt.in, e, err)
			continue
		}
		if e.String() != "unix://"+tt.addr {
			t.Errorf("String() = %q", e.String())
		}
	}
	_, err := transport.ParseEndpoint("unix://" + long + "a")
	if err == nil || !strings.Contains(err.Error(), "107") {
		t.Errorf("too-long path error %q should name the limit", err)
	}
}

func TestUnixListenValidates(t *testing.T) {
	// Listen checks the address too, for callers that skip ParseEndpoint.
	l, err := transport.Listen(t.Context(), transport.Endpoint{Transport: "unix", Addr: "rel.sock"}, transport.Options{})
	if err == nil {
		l.Close()
		t.Fatal("Listen on a relative path succeeded")
	}
	if _, statErr := os.Lstat("rel.sock"); statErr == nil {
		t.Error("Listen created rel.sock")
	}
}
