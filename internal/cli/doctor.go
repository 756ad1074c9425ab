package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/pyro"
)

func (a *app) doctorCommand() *cobra.Command {
	var asJSON bool
	var environment string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether this host can run pyro's VMs",
		Long: `Doctor checks the host: QEMU, /dev/kvm and whether KVM is fast here, the
environment cache and the tools a local environment build needs. Every FAIL
says how to fix it.`,
		Example: `  pyro doctor
  pyro doctor --environment debian:12
  pyro doctor --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := a.sdk("doctor").Doctor(cmd.Context(), pyro.DoctorRequest{Environment: environment})
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				writeJSON(a.stdout, rep)
			} else {
				printDoctor(a.stdout, rep)
			}
			if rep.Runtime != "PASS" {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&environment, "environment", "", "also say whether this environment is warm, cold or stale")
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printDoctor(w io.Writer, r *pyro.DoctorReport) {
	fmt.Fprintf(w, "Platform: %s\n", r.Platform)
	fmt.Fprintf(w, "Runtime: %s\n", r.Runtime)
	fmt.Fprintf(w, "KVM: exists=%s readable=%s writable=%s\n", yesNo(r.KVM.Exists), yesNo(r.KVM.Readable), yesNo(r.KVM.Writable))
	fmt.Fprintf(w, "Accelerator: %s (%s)\n", r.Accelerator, r.AcceleratorReason)
	fmt.Fprintf(w, "Environment cache: %s\n", r.EnvironmentCache)
	fmt.Fprintf(w, "Catalog version: %s\n", r.CatalogVersion)
	fmt.Fprintf(w, "Capabilities: vm_boot=%s guest_exec=%s guest_network=%s\n",
		yesNo(r.Capabilities.VMBoot), yesNo(r.Capabilities.GuestExec), yesNo(r.Capabilities.GuestNetwork))
	fmt.Fprintf(w, "Networking: %s\n", r.Networking)
	if r.Environment != nil {
		fmt.Fprintf(w, "Environment: %s %s\n", r.Environment.Name, r.Environment.State)
	}
	for _, c := range r.Checks {
		line := fmt.Sprintf("  %-4s %s: %s", c.Status, c.Name, c.Detail)
		fmt.Fprintln(w, line)
		if c.Fix != "" && c.Status != "PASS" {
			fmt.Fprintf(w, "       fix: %s\n", c.Fix)
		}
	}
}
