// Package cli is the pyro command line: each command parses its flags,
// calls the SDK, and renders text or JSON. No logic lives here that a Go
// program could not reach through the SDK.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pyro-sandbox/pyro/internal/buildinfo"
	"github.com/pyro-sandbox/pyro/internal/progress"
	"github.com/pyro-sandbox/pyro/pyro"
)

// Exit codes of commands other than run and exec.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error // already reported when nil
}

func (e *exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit %d", e.code)
}

// app holds what every command shares.
type app struct {
	stdout, stderr io.Writer
	client         *pyro.Client
	clientOpts     pyro.Options
}

// sdk returns the SDK client, with progress reported under prefix.
func (a *app) sdk(prefix string) *pyro.Client {
	opts := a.clientOpts
	opts.Progress = a.reporter(prefix)
	return pyro.New(opts)
}

func (a *app) reporter(prefix string) progress.Reporter {
	if f, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return progress.NewTerminal(f, prefix)
	}
	return &progress.Lines{W: a.stderr, Prefix: prefix}
}

// Main runs the pyro command line with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			printError(stderr, ee.err)
		}
		return ee.code
	}
	// Errors cobra found in the command line itself.
	fmt.Fprintf(stderr, "pyro: %v\n", err)
	fmt.Fprintln(stderr, "hint: see 'pyro --help'")
	return exitUsage
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pyro",
		Short: "Disposable Linux microVMs for coding agents and developers",
		Long: `pyro runs commands and persistent workspaces inside microVMs on this Linux host.

Start with:
  pyro doctor                          check the host
  pyro env pull debian:12              make the default environment ready
  pyro run debian:12 -- git --version  run one command in a fresh VM`,
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(a.runCommand(), a.doctorCommand(), a.envCommand(), a.prepareCommand(), a.demoCommand(), a.workspaceCommand(), a.mcpCommand(), a.hostCommand())
	return root
}

// fail reports err in the form the command's output asks for and returns
// the exitError that carries code.
func (a *app) fail(asJSON bool, code int, err error) error {
	if asJSON {
		writeJSON(a.stdout, ErrorPayload{Error: errorBody(err)})
		return &exitError{code: code}
	}
	return &exitError{code: code, err: err}
}

// failCode picks the exit code of a failed non-run command: 1. Usage
// errors (2) are found in the command line itself, before the SDK runs.
func failCode(err error) int {
	return exitFailure
}
