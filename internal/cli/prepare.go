package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/pyro"
)

func (a *app) prepareCommand() *cobra.Command {
	var req pyro.PrepareRequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "prepare [ENVIRONMENT]",
		Short: "Warm an environment so the next run is fast, and prove it works",
		Long: `Prepare makes ENVIRONMENT (default debian:12) ready for fast starts: it
pulls it if it is not installed, makes the snapshot that runs of the default
size restore instead of booting (again, with --force), and proves the whole
path with one throwaway workspace: create, exec, reset, delete.`,
		Example: `  pyro prepare
  pyro prepare debian:12-build --json
  pyro prepare debian:12 --force`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				req.Environment = args[0]
			}
			res, err := a.sdk("prepare").Prepare(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				return writeJSON(a.stdout, res)
			}
			pulled := "installed"
			if res.Pulled {
				pulled = "pulled"
			}
			fmt.Fprintf(a.stdout, "Environment: %s (%s)\n", res.Environment, pulled)
			fmt.Fprintf(a.stdout, "Execution mode: %s", res.ExecutionMode)
			if res.Accelerator != "" {
				fmt.Fprintf(a.stdout, " (accelerator %s)", res.Accelerator)
			}
			fmt.Fprintln(a.stdout)
			switch res.Template {
			case pyro.TemplateReady:
				fmt.Fprintf(a.stdout, "Template: ready (a run now takes %d ms)\n", res.RunMs)
			case pyro.TemplateOff:
				fmt.Fprintf(a.stdout, "Template: off (PYRO_TEMPLATES=0; a run takes %d ms)\n", res.RunMs)
			default:
				fmt.Fprintf(a.stdout, "Template: unavailable, runs boot cold (see pyro doctor; a run takes %d ms)\n", res.RunMs)
			}
			w := res.Workspace
			fmt.Fprintf(a.stdout, "Workspace proof: create %d ms, exec %d ms, reset %d ms, delete %d ms\n", w.CreateMs, w.ExecMs, w.ResetMs, w.DeleteMs)
			fmt.Fprintf(a.stdout, "Prepared in %.1f s\n", float64(res.DurationMs)/1000)
			return nil
		},
	}
	cmd.Flags().BoolVar(&req.Force, "force", false, "make the run template again even when one is ready")
	cmd.Flags().BoolVar(&req.Network, "network", false, "also prepare guest networking (not supported yet)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
