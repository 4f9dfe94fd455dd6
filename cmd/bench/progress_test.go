package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	p := newProgress("on", &out)
	p.now = func() time.Time { return now }

	p.update(10, 100) // a new run starts: too early for a bar
	now = now.Add(time.Second)
	p.update(20, 100)
	if out.Len() != 0 {
		t.Fatalf("bar drawn before %v: %q", progressDelay, out.String())
	}
	now = now.Add(2 * time.Second)
	p.update(50, 100)
	if !strings.Contains(out.String(), "bench") {
		t.Fatalf("no bar after %v: %q", progressDelay, out.String())
	}
	p.update(100, 100) // done: the bar is removed
	if p.bar != nil {
		t.Fatal("bar still set after the run finished")
	}

	// A new run (a new total) starts its own delay.
	out.Reset()
	p.update(1, 7)
	if out.Len() != 0 || p.bar != nil {
		t.Fatalf("new run drew a bar at once: %q", out.String())
	}
}

func TestProgressOffWhenNotTerminal(t *testing.T) {
	var out bytes.Buffer
	for _, mode := range []string{"auto", "off"} {
		p := newProgress(mode, &out) // a bytes.Buffer is not a terminal
		p.now = func() time.Time { return time.Unix(0, 0) }
		p.update(0, 10)
		p.now = func() time.Time { return time.Unix(100, 0) }
		p.update(5, 10)
		if out.Len() != 0 || p.on {
			t.Fatalf("--progress %s on a buffer drew %q", mode, out.String())
		}
	}
}
