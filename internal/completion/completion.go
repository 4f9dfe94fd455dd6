// Package completion gives every dflockd binary shell completion for bash,
// zsh and fish. The completions come from the kong model itself (commands,
// flags, enum values), through github.com/willabides/kongplete.
//
// A binary adds a Cmd as its "completion" command and calls Complete before
// parsing. `dflockctl completion bash` prints a script to source; the script
// registers the binary itself as its own completer (bash's `complete -C`),
// so the shell runs it with COMP_LINE set and Complete answers with the
// candidates for the word being typed.
package completion

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"
)

// Shells are the shells Script supports.
var Shells = []string{"bash", "zsh", "fish"}

// Cmd is the `completion SHELL` command: it prints the completion script
// for SHELL and exits.
type Cmd struct {
	Shell string `arg:"" name:"shell" enum:"bash,zsh,fish" help:"Shell to print the script for: bash, zsh or fish."`
}

// Help implements kong.HelpProvider.
func (Cmd) Help() string {
	return `Prints a script that makes the shell complete this program's commands and
flags. Load it in the current shell, or add the line to the shell's start-up
file:

  bash:  source <(PROGRAM completion bash)        (~/.bashrc)
  zsh:   source <(PROGRAM completion zsh)         (~/.zshrc)
  fish:  PROGRAM completion fish | source         (~/.config/fish/config.fish)

The script runs this binary by its absolute path to compute completions;
print it again if the binary moves.`
}

// AfterApply prints the script and exits with status 0.
func (c *Cmd) AfterApply(ctx *kong.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("completion: locate this program: %w", err)
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	script, err := Script(c.Shell, ctx.Model.Name, bin)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprint(ctx.Stdout, script); err != nil {
		return fmt.Errorf("completion: %w", err)
	}
	ctx.Exit(0)
	return nil
}

// Script returns the completion script for shell that completes the
// command name by running the binary bin.
func Script(shell, name, bin string) (string, error) {
	switch shell {
	case "bash":
		return fmt.Sprintf("# bash completion for %[1]s\ncomplete -C %[2]s %[1]s\n", name, shQuote(bin)), nil
	case "zsh":
		return fmt.Sprintf("# zsh completion for %[1]s (through bash's complete -C)\n"+
			"autoload -U +X bashcompinit && bashcompinit\n"+
			"complete -C %[2]s %[1]s\n", name, shQuote(bin)), nil
	case "fish":
		fn := "__" + strings.ReplaceAll(name, "-", "_") + "_complete"
		return fmt.Sprintf("# fish completion for %[1]s\n"+
			"function %[3]s\n"+
			"    set -lx COMP_LINE (commandline -cp)\n"+
			"    if test -z (commandline -ct)\n"+
			"        set COMP_LINE \"$COMP_LINE \"\n"+
			"    end\n"+
			"    %[2]s\n"+
			"end\n"+
			"complete -c %[1]s -f -a '(%[3]s)'\n", name, fishQuote(bin), fn), nil
	}
	return "", fmt.Errorf("completion: unsupported shell %q (want one of %s)", shell, strings.Join(Shells, ", "))
}

// Complete answers a completion request and exits through the parser's
// exit function, when the shell asked for one (COMP_LINE is set in the
// environment); otherwise it returns and the program parses its arguments
// as usual.
func Complete(k *kong.Kong) {
	if os.Getenv("COMP_LINE") == "" {
		return
	}
	cmd, err := kongplete.Command(k)
	if err != nil {
		k.Errorf("completion: %v", err)
		k.Exit(1)
		return
	}
	// The flags of a default command (kong's default:"withargs", as
	// dflockd's serve) are given without its name: offer them at the top.
	if def := k.Model.DefaultCmd; def != nil {
		if sub, ok := cmd.Sub[def.Name]; ok {
			if cmd.Flags == nil {
				cmd.Flags = complete.Flags{}
			}
			for name, p := range sub.GlobalFlags {
				cmd.Flags[name] = p
			}
		}
	}
	c := complete.New(k.Model.Name, cmd)
	c.Out = k.Stdout
	if c.Complete() {
		k.Exit(0)
	}
}

// shQuote quotes s for bash and zsh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// fishQuote quotes s for fish, where \ and ' are escaped inside single
// quotes.
func fishQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}
