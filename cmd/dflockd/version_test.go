package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dflockd/dflockd/internal/version"
)

// TestVersionCommand: `dflockd version` prints the --version line.
func TestVersionCommand(t *testing.T) {
	want := version.String("dflockd") + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr, env(nil)); code != 0 || stdout.String() != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", args, code, stdout.String(), stderr.String(), want)
		}
	}
}

// TestCompletion: `dflockd completion SHELL` prints a script for each
// shell, and with COMP_LINE set (as the shell sets it) dflockd prints the
// candidates for a partial flag instead of serving.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), []string{"completion", shell}, &stdout, &stderr, env(nil))
		if code != 0 || !strings.Contains(stdout.String(), "dflockd") {
			t.Errorf("completion %s: exit %d, stdout %q, stderr %q", shell, code, stdout.String(), stderr.String())
		}
	}
	for line, want := range map[string]string{
		"dflockd --auth-token-f": "--auth-token-file\n",
		"dflockd gen-c":          "gen-cert\n",
		"dflockd completion z":   "zsh\n",
	} {
		t.Setenv("COMP_LINE", line)
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), nil, &stdout, &stderr, env(nil))
		if code != 0 || stdout.String() != want {
			t.Errorf("COMP_LINE %q: exit %d, stdout %q, stderr %q; want %q", line, code, stdout.String(), stderr.String(), want)
		}
	}
}
