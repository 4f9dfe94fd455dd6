package transport_test

import (
	"testing"

	"github.com/dflockd/dflockd/transport"
)

// FuzzParseEndpoint: ParseEndpoint never panics, and what it accepts
// prints as a URL that parses back to the same endpoint.
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"127.0.0.1:6388", "db1", "::1", "[::1]", "/run/d.sock", "./d.sock",
		"tls://[::1]:6388", "unix:///x.sock", "tcp://h", ":6388", "a:b:c", ".", "db1:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := transport.ParseEndpoint(s)
		if err != nil {
			return
		}
		again, err := transport.ParseEndpoint(e.String())
		if err != nil || again != e {
			t.Fatalf("ParseEndpoint(%q) = %+v, but %q parses to %+v, %v", s, e, e.String(), again, err)
		}
	})
}
