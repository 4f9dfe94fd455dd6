package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/examples/internal/exampletest"
)

func TestMain(m *testing.M) { os.Exit(exampletest.Main(m)) }

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mutual   bool
		identity string
	}{
		{"mutual TLS", true, "identity cert:dflockd test"},
		{"server TLS only", false, "identity none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := exampletest.Start(t, exampletest.Config{Transport: "tls", MutualTLS: tc.mutual})
			args := []string{
				"-addr", srv.Addr,
				"-ca", filepath.Join(srv.CertDir, "ca.pem"),
				"-cert", filepath.Join(srv.CertDir, "client.pem"),
				"-key", filepath.Join(srv.CertDir, "client-key.pem"),
			}
			var out strings.Builder
			if err := run(exampletest.Context(t), args, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			for _, want := range []string{"over TLS", "over tls, " + tc.identity, "released"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
	// Without a client certificate a mutual-TLS server turns us away.
	srv := exampletest.Start(t, exampletest.Config{Transport: "tls", MutualTLS: true})
	var out strings.Builder
	err := run(exampletest.Context(t), []string{"-addr", srv.Addr, "-ca", filepath.Join(srv.CertDir, "ca.pem"), "-cert="}, &out)
	if err == nil {
		t.Fatalf("run without a client certificate succeeded:\n%s", out.String())
	}
}
