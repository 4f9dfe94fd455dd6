package testserver

import (
	"strings"
	"testing"
)

func TestStartEveryTransport(t *testing.T) {
	for _, name := range Transports {
		t.Run(name, func(t *testing.T) {
			ts := Start(t, name, Config{})
			c := ts.Line(t)
			if got := c.Do("l", "k", "0"); !strings.HasPrefix(got, "ok ") {
				t.Fatalf("l k 0 = %q; want ok <token> <ttl>", got)
			}
			if !strings.HasPrefix(ts.Addr, name+"://") {
				t.Fatalf("Addr = %q; want %s:// prefix", ts.Addr, name)
			}
		})
	}
}
