package completion

import (
	"bytes"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

type testCLI struct {
	Verbose    bool     `name:"verbose"`
	Format     string   `name:"format" enum:"json,text" default:"text"`
	Serve      struct{} `cmd:""`
	Completion Cmd      `cmd:""`
}

type exitCode int

// parse runs the completion hook and the parser on args, reporting the
// exit status if the program asked to exit.
func parse(t *testing.T, args ...string) (stdout string, exited bool) {
	t.Helper()
	var out bytes.Buffer
	k, err := kong.New(&testCLI{}, kong.Name("prog"), kong.Writers(&out, &out),
		kong.Exit(func(code int) { panic(exitCode(code)) }))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			if code != 0 {
				t.Errorf("%q: exit %d: %s", args, code, out.String())
			}
			stdout, exited = out.String(), true
		}
	}()
	Complete(k)
	if _, err := k.Parse(args); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return out.String(), false
}

func TestScript(t *testing.T) {
	for _, shell := range Shells {
		s, err := Script(shell, "dflockctl", "/opt/it's here/dflockctl")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(s, "dflockctl") || !strings.Contains(s, "complete ") {
			t.Errorf("%s script:\n%s", shell, s)
		}
	}
	if s, _ := Script("bash", "x", "/a'b"); !strings.Contains(s, `'/a'\''b'`) {
		t.Errorf("bash quoting: %s", s)
	}
	if _, err := Script("tcsh", "x", "/x"); err == nil {
		t.Error("tcsh accepted")
	}
}

func TestCompletionCommand(t *testing.T) {
	for _, shell := range Shells {
		out, exited := parse(t, "completion", shell)
		if !exited || !strings.Contains(out, "prog") {
			t.Errorf("completion %s: exited %v, output %q", shell, exited, out)
		}
	}
}

// TestComplete: with COMP_LINE set (as bash's complete -C and the fish
// script set it), the program prints the candidates and exits.
func TestComplete(t *testing.T) {
	for line, want := range map[string]string{
		"prog --verb":        "--verbose\n",
		"prog --format j":    "json\n",
		"prog comp":          "completion\n",
		"prog completion fi": "fish\n",
	} {
		t.Setenv("COMP_LINE", line)
		t.Setenv("COMP_POINT", "")
		out, exited := parse(t)
		if !exited || out != want {
			t.Errorf("COMP_LINE %q: exited %v, output %q; want %q", line, exited, out, want)
		}
	}
	t.Setenv("COMP_LINE", "")
	if _, exited := parse(t, "serve"); exited {
		t.Error("without COMP_LINE the program exited")
	}
}
