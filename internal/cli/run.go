package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/progress"
	"github.com/pyro-sandbox/pyro/pyro"
)

// Exit codes of run (and workspace exec) when the guest command gave none.
const (
	exitPyroFailed = 125
	exitTimedOut   = pyro.ExitCodeTimeout
	exitCancelled  = 130
)

func runFailCode(err error) int {
	switch errs.KindOf(err) {
	case errs.Invalid:
		return exitUsage
	case errs.Cancelled:
		return exitCancelled
	}
	return exitPyroFailed
}

func (a *app) runCommand() *cobra.Command {
	var req pyro.RunRequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "run ENVIRONMENT [flags] -- COMMAND [ARG...]",
		Short: "Run one command in a fresh VM, then delete the VM",
		Long: `Run creates a VM from ENVIRONMENT, runs COMMAND in it, and deletes the VM.

The command's output goes to stdout and stderr; phase lines and a summary go
to stderr. pyro exits with the command's exit code, 124 when it timed out,
and 125 when pyro itself failed.`,
		Example: `  pyro run debian:12 -- git --version
  pyro run debian:12-build --timeout-seconds 120 -- sh -c 'cc --version && make --version'
  pyro run debian:12 --json -- uname -a`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash < 0 {
				if len(args) == 0 {
					return fmt.Errorf("name an environment and a command: pyro run debian:12 -- git --version")
				}
				return fmt.Errorf("put the command after --: pyro run %s -- COMMAND", args[0])
			}
			if dash != 1 {
				return fmt.Errorf("want exactly one environment before --, got %d arguments", dash)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Environment = args[0]
			req.Command = args[1:]
			// Flags always carry a value, so a 0 here was typed: refuse it
			// rather than let the SDK read it as "default".
			if err := req.Validate(); err != nil {
				return a.fail(asJSON, exitUsage, err)
			}
			if !asJSON {
				req.Stdout = a.stdout
				req.Stderr = a.stderr
			}
			res, err := a.sdk("run").Run(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, runFailCode(err), err)
			}
			code := res.ExitCode
			if asJSON {
				writeJSON(a.stdout, res)
			} else {
				a.runSummary(res)
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&req.VCPUCount, "vcpu-count", pyro.DefaultVCPUCount, "virtual CPUs of the VM")
	f.IntVar(&req.MemMiB, "mem-mib", pyro.DefaultMemMiB, "memory of the VM in MiB")
	f.IntVar(&req.TimeoutSeconds, "timeout-seconds", pyro.DefaultTimeoutSeconds, "kill the command after this long (exit 124)")
	f.IntVar(&req.TTLSeconds, "ttl-seconds", pyro.DefaultTTLSeconds, "delete the VM after this long, whatever happens")
	f.BoolVar(&req.Network, "network", false, "give the guest outbound network access")
	f.BoolVar(&req.AllowHostCompat, "allow-host-compat", false, "when no VM can boot, run on the host inside namespaces")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) runSummary(res *pyro.RunResult) {
	if res.StdoutTruncated {
		fmt.Fprintln(a.stderr, progress.FormatLine("run", "warning", "stdout truncated", "kept_bytes", strconv.Itoa(len(res.Stdout))))
	}
	if res.StderrTruncated {
		fmt.Fprintln(a.stderr, progress.FormatLine("run", "warning", "stderr truncated", "kept_bytes", strconv.Itoa(len(res.Stderr))))
	}
	kv := []string{"environment", res.Environment, "execution_mode", res.ExecutionMode}
	if res.Accelerator != "" {
		kv = append(kv, "accelerator", res.Accelerator)
	}
	kv = append(kv, "exit_code", strconv.Itoa(res.ExitCode), "duration_ms", strconv.FormatInt(res.DurationMs, 10))
	if res.TimedOut {
		kv = append(kv, "timed_out", "true")
	}
	fmt.Fprintln(a.stderr, progress.FormatLine("run", kv...))
}
