package main

import (
	"strings"
	"testing"

	"github.com/dflockd/dflockd/internal/version"
)

// TestVersion: --version prints "bench VERSION (GOVERSION)".
func TestVersion(t *testing.T) {
	code, out, errOut := runBench(t, "--version")
	if want := version.String("bench") + "\n"; code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
}

// TestWholeSeconds: --timeout and --lease go on the wire as seconds, so
// a fraction of a second is refused rather than rounded.
func TestWholeSeconds(t *testing.T) {
	for _, args := range [][]string{{"--timeout", "500ms"}, {"--lease", "1.5s"}, {"--timeout", "2.5"}} {
		code, _, errOut := runBench(t, args...)
		if code != 2 || !strings.Contains(errOut, "must be whole seconds") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
	var c RunCmd
	c.Mode, c.Repeat, c.Workers, c.Rounds, c.Timeout, c.Lease = []string{"lock"}, 1, 1, 1, 90, 0
	c.Servers = []string{"db1", "/run/d.sock"}
	cfg, err := c.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout.Seconds() != 90 || cfg.Servers[0].String() != "tcp://db1:6388" || cfg.Servers[1].String() != "unix:///run/d.sock" {
		t.Fatalf("config: timeout %v, servers %v", cfg.Timeout, cfg.Servers)
	}
}

// TestCompletion: `completion SHELL` prints a script for each shell, and
// with COMP_LINE set bench prints the candidates for a partial flag. Not
// parallel: it sets the environment.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := runBench(t, "completion", shell)
		if code != 0 || !strings.Contains(out, "complete") || !strings.Contains(out, "bench") {
			t.Errorf("completion %s: exit %d, stdout %q, stderr %q", shell, code, out, errOut)
		}
	}
	for line, want := range map[string]string{
		"bench --work":        "--workers\n",
		"bench mem":           "memory\n",
		"bench --progress of": "off\n",
	} {
		t.Setenv("COMP_LINE", line)
		code, out, errOut := runBench(t)
		if code != 0 || out != want {
			t.Errorf("COMP_LINE %q: exit %d, stdout %q, stderr %q; want %q", line, code, out, errOut, want)
		}
	}
}
