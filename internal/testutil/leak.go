package testutil

import (
	"runtime"
	"strings"
	"time"
)

// Goroutines returns the stack of every running goroutine, one string
// each.
func Goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// WaitNoGoroutines polls until no running goroutine's stack satisfies
// leaked, for at most limit. It returns "" then, or the offending stacks
// when the limit passes. Test binaries call it from TestMain to prove
// every goroutine they started has an owner that stopped it.
func WaitNoGoroutines(limit time.Duration, leaked func(stack string) bool) string {
	deadline := time.Now().Add(limit)
	for {
		var bad []string
		for _, g := range Goroutines() {
			if leaked(g) {
				bad = append(bad, g)
			}
		}
		if len(bad) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(bad, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
