package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dflockd/dflockd/core"
)

// Issue 11 #7: after one client takes and releases max-locks keys, another
// client's new key is served at once (idle keys are collected on the
// spot, though GC is an hour away); with every key in use the new key is
// refused, and the first refusal is logged at WARN, once.
func TestMaxLocksCollectsIdleKeys(t *testing.T) {
	t.Parallel()
	log, buf := logger()
	const max = 64
	ts := start(t, Options{Logger: log}, core.Options{MaxKeys: max, GCMaxIdle: time.Hour, GCInterval: time.Hour})
	a, b := ts.dial(t), ts.dial(t)
	for i := range max {
		key := fmt.Sprintf("k%d", i)
		tok := expectGrant(t, a.Do("l", key, "0"), "ok", "33")
		a.Expect("r", key, tok, "ok")
	}
	expectGrant(t, b.Do("l", "new", "0"), "ok", "33")
	for i := range max - 1 {
		expectGrant(t, a.Do("sl", fmt.Sprintf("s%d", i), "0 2"), "ok", "33")
	}
	if n := ts.Engine.Keys(); n != max {
		t.Fatalf("%d keys; want %d", n, max)
	}
	if strings.Contains(buf.String(), "key limit reached") {
		t.Fatalf("refusal logged before any refusal:\n%s", buf.String())
	}
	b.Expect("l", "one-too-many", "0", "error_max_locks")
	b.Expect("e", "one-too-many", "", "error_max_locks")
	ping(t, b) // the log line is written before the answer
	if got := strings.Count(buf.String(), "key limit reached"); got != 1 {
		t.Fatalf("%d WARN lines for two refusals; want 1:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), fmt.Sprintf("max_locks=%d", max)) {
		t.Fatalf("refusal log lacks level or cap:\n%s", buf.String())
	}
}
