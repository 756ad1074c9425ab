package cli

import (
	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/pyro"
)

func (a *app) demoCommand() *cobra.Command {
	var network bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Prove the VM path end to end: git --version in debian:12",
		Long: `Demo creates a debian:12 VM, runs git --version in it, deletes the VM and
prints the JSON result. With --network it also proves guest networking.`,
		Example: "  pyro demo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := pyro.RunRequest{Environment: "debian:12", Command: []string{"git", "--version"}, Network: network}
			res, err := a.sdk("run").Run(cmd.Context(), req)
			if err != nil {
				return a.fail(true, runFailCode(err), err)
			}
			writeJSON(a.stdout, res)
			if res.ExitCode != 0 {
				return &exitError{code: res.ExitCode}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&network, "network", false, "also prove guest networking")
	return cmd
}
