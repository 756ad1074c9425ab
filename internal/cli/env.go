package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/pyro"
)

func (a *app) envCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "env",
		Short: "List, pull, inspect and prune environments",
		Long: `Environments are what VMs boot: a Debian root filesystem with a kernel.
The catalog names them (debian:12, debian:12-base, debian:12-build); pull
makes one ready in the local cache.`,
	}
	cmd.AddCommand(a.envListCommand(), a.envPullCommand(), a.envPushCommand(), a.envInspectCommand(), a.envPruneCommand())
	return cmd
}

func (a *app) envListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the catalog and what is installed",
		Example: "  pyro env list\n  pyro env list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := a.sdk("env").ListEnvironments(cmd.Context())
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				return writeJSON(a.stdout, list)
			}
			fmt.Fprintf(a.stdout, "Catalog version: %s\n", list.CatalogVersion)
			for _, e := range list.Environments {
				state := "not installed"
				switch e.State {
				case "warm":
					state = "installed"
				case "stale":
					state = "installed, stale"
				}
				fmt.Fprintf(a.stdout, "%s [%s] %s\n", e.Name, state, e.Description)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) envPullCommand() *cobra.Command {
	var asJSON bool
	var req pyro.PullRequest
	cmd := &cobra.Command{
		Use:   "pull ENVIRONMENT",
		Short: "Make an environment ready in the local cache",
		Long: `Pull makes an environment ready to boot. A catalog environment is fetched from
the registry as an OCI artifact (--registry or $PYRO_REGISTRY name a mirror);
where no registry copy can be had it is built locally from Debian packages
with debootstrap (root, a few minutes) unless --no-build is given. Any OCI
image reference works too: its layers become the root filesystem, booted with
the catalog's kernel. A pull of an installed environment returns at once.`,
		Example: "  pyro env pull debian:12\n  pyro env pull debian:12-build --registry 127.0.0.1:5000/pyro --no-build\n  pyro env pull docker.io/library/alpine:3.20",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Environment = args[0]
			res, err := a.sdk("pull").Pull(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				return writeJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "Pulled: %s\n", res.Environment)
			fmt.Fprintf(a.stdout, "Version: %s\nAction: %s\nSource: %s\nDigest: %s\nSize: %s\n",
				res.Version, res.Action, res.Source, res.Digest, humanBytes(res.SizeBytes))
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Registry, "registry", "", "registry of the catalog's artifacts (default $PYRO_REGISTRY, else "+env.DefaultRegistry+")")
	cmd.Flags().BoolVar(&req.NoBuild, "no-build", false, "fail instead of building locally when no registry copy can be had")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) envPushCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "push ENVIRONMENT REFERENCE",
		Short: "Publish an installed environment as an OCI artifact",
		Long: `Push writes an installed environment (kernel, modules, root filesystem and its
manifest) as an OCI artifact to a registry, or to an OCI image layout
directory with oci:DIR. The catalog's artifacts are published with it.`,
		Example: "  pyro env push debian:12 127.0.0.1:5000/pyro/debian:12-v2\n  pyro env push debian:12 oci:./out",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.sdk("push").PushEnvironment(cmd.Context(), args[0], args[1])
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				return writeJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "Pushed: %s\nReference: %s\nDigest: %s\nSize: %s\n", res.Environment, res.Reference, res.Digest, humanBytes(res.SizeBytes))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) envInspectCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "inspect ENVIRONMENT",
		Short:   "Describe an environment",
		Example: "  pyro env inspect debian:12",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := a.sdk("env").InspectEnvironment(cmd.Context(), args[0])
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				return writeJSON(a.stdout, info)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 1, ' ', 0)
			fmt.Fprintf(tw, "Name:\t%s\n", info.Name)
			fmt.Fprintf(tw, "Version:\t%s\n", info.Version)
			fmt.Fprintf(tw, "Description:\t%s\n", info.Description)
			fmt.Fprintf(tw, "Installed:\t%s (%s)\n", yesNo(info.Installed), info.State)
			if info.Installed {
				fmt.Fprintf(tw, "Source:\t%s\n", info.Source)
				fmt.Fprintf(tw, "Digest:\t%s\n", info.Digest)
				fmt.Fprintf(tw, "Size:\t%s\n", humanBytes(info.SizeBytes))
				fmt.Fprintf(tw, "Kernel:\t%s\n", info.Kernel)
				fmt.Fprintf(tw, "Created:\t%s\n", info.CreatedAt.Format("2006-01-02 15:04:05 MST"))
				if !info.LastUsedAt.IsZero() {
					fmt.Fprintf(tw, "Last used:\t%s\n", info.LastUsedAt.Format("2006-01-02 15:04:05 MST"))
				}
			}
			fmt.Fprintf(tw, "Cache:\t%s\n", info.CachePath)
			names := make([]string, 0, len(info.Packages))
			for _, p := range info.Packages {
				names = append(names, p.Name)
			}
			fmt.Fprintf(tw, "Packages:\t%d: %s\n", len(names), strings.Join(names, " "))
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) envPruneCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "prune",
		Short:   "Remove cached environments and blobs nothing uses",
		Example: "  pyro env prune",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.sdk("env").PruneEnvironments(cmd.Context())
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if asJSON {
				return writeJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "Removed environments: %d %s\nRemoved blobs: %d\nFreed: %s\n",
				len(res.RemovedEnvironments), strings.Join(res.RemovedEnvironments, " "), res.RemovedBlobs, humanBytes(res.FreedBytes))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit-0.05 && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
