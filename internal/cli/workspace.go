package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/progress"
	"github.com/pyro-sandbox/pyro/pyro"
)

func (a *app) workspaceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workspace",
		Aliases: []string{"ws"},
		Short:   "Persistent sandboxes: create, exec, edit files, diff, export, reset, delete",
		Long: `A workspace is a VM with a persistent /workspace, kept between calls until it is
deleted or its TTL (counted from the last activity) passes. Commands take a
workspace id or name.`,
		Example: `  WS=$(pyro workspace create debian:12 --seed-path ./repo --name fix-123 --id-only)
  pyro workspace exec fix-123 -- git status
  pyro workspace file write fix-123 src/app.py --text 'print("hi")'
  pyro workspace diff fix-123
  pyro workspace export fix-123 src --output ./src-out
  pyro workspace delete fix-123`,
	}
	file := &cobra.Command{Use: "file", Short: "List, read and write files under /workspace"}
	file.AddCommand(a.wsFileListCommand(), a.wsFileReadCommand(), a.wsFileWriteCommand())
	sync := &cobra.Command{Use: "sync", Short: "Copy host files into a workspace"}
	sync.AddCommand(a.wsSyncPushCommand())
	patchCmd := &cobra.Command{Use: "patch", Short: "Apply unified diffs"}
	patchCmd.AddCommand(a.wsPatchApplyCommand())
	cmd.AddCommand(a.wsCreateCommand(), a.wsListCommand(), a.wsUpdateCommand(), a.wsStatusCommand(),
		a.wsLogsCommand(), a.wsSummaryCommand(), a.wsExecCommand(), a.wsDiffCommand(), a.wsExportCommand(),
		a.wsResetCommand(), a.wsDeleteCommand(), a.wsStopCommand(), a.wsStartCommand(), file, sync, patchCmd)
	return cmd
}

// output renders v as JSON, or with text when not asJSON.
func (a *app) output(asJSON bool, v any, text func(io.Writer)) error {
	if asJSON {
		return writeJSON(a.stdout, v)
	}
	text(a.stdout)
	return nil
}

func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errs.New(errs.Invalid, "use --label KEY=VALUE", "malformed label %q", kv)
		}
		out[k] = v
	}
	return out, nil
}

func printWorkspace(w io.Writer, ws *pyro.Workspace) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "Workspace:\t%s\n", ws.WorkspaceID)
	if ws.Name != "" {
		fmt.Fprintf(tw, "Name:\t%s\n", ws.Name)
	}
	fmt.Fprintf(tw, "Environment:\t%s\n", ws.Environment)
	fmt.Fprintf(tw, "State:\t%s\n", ws.State)
	fmt.Fprintf(tw, "Execution mode:\t%s\n", ws.ExecutionMode)
	fmt.Fprintf(tw, "Size:\t%d vCPU, %d MiB\n", ws.VCPUCount, ws.MemMiB)
	fmt.Fprintf(tw, "Seed:\t%s %s\n", ws.WorkspaceSeed.Mode, ws.WorkspaceSeed.SeedPath)
	if len(ws.Labels) > 0 {
		fmt.Fprintf(tw, "Labels:\t%s\n", formatLabels(ws.Labels))
	}
	fmt.Fprintf(tw, "Commands:\t%d\n", ws.CommandCount)
	if ws.LastCommand != nil {
		fmt.Fprintf(tw, "Last command:\t%s (exit %d)\n", ws.LastCommand.Command, ws.LastCommand.ExitCode)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", ws.CreatedAt.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "Last activity:\t%s\n", ws.LastActivityAt.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "Expires:\t%s\n", ws.ExpiresAt.Local().Format(time.DateTime))
	if ws.LastError != "" {
		fmt.Fprintf(tw, "Last error:\t%s\n", ws.LastError)
	}
	tw.Flush()
}

func formatLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func (a *app) wsCreateCommand() *cobra.Command {
	var req pyro.WorkspaceCreateRequest
	var labels, secrets, secretFiles []string
	var asJSON, idOnly bool
	cmd := &cobra.Command{
		Use:   "create ENVIRONMENT",
		Short: "Create a workspace, seeded from a directory or archive",
		Example: `  pyro workspace create debian:12
  pyro workspace create debian:12 --seed-path ./repo --name repro-fix --label issue=123
  pyro workspace create debian:12-build --seed-path src.tgz --id-only`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Environment = args[0]
			var err error
			if req.Labels, err = parseLabels(labels); err != nil {
				return a.fail(asJSON, exitUsage, err)
			}
			if len(secrets)+len(secretFiles) > 0 {
				return a.fail(asJSON, exitFailure, errs.New(errs.Unavailable, "create the workspace without --secret; secrets come in a later release", "workspace secrets are not supported yet"))
			}
			ws, err := a.sdk("workspace").CreateWorkspace(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			if idOnly && !asJSON {
				fmt.Fprintln(a.stdout, ws.WorkspaceID)
				return nil
			}
			return a.output(asJSON, ws, func(w io.Writer) { printWorkspace(w, ws) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.SeedPath, "seed-path", "", "directory, .tar, .tar.gz or .tgz to seed /workspace from")
	f.StringVar(&req.Name, "name", "", "a unique name, usable wherever the id is")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE label (repeat)")
	f.IntVar(&req.VCPUCount, "vcpu-count", pyro.DefaultVCPUCount, "virtual CPUs")
	f.IntVar(&req.MemMiB, "mem-mib", pyro.DefaultMemMiB, "memory in MiB")
	f.IntVar(&req.TTLSeconds, "ttl-seconds", pyro.DefaultWorkspaceTTLSeconds, "delete the workspace after this long without activity")
	f.StringVar(&req.NetworkPolicy, "network-policy", "off", "off, egress or egress+published-ports")
	f.StringArrayVar(&secrets, "secret", nil, "NAME=VALUE secret (repeat)")
	f.StringArrayVar(&secretFiles, "secret-file", nil, "NAME=PATH secret read from a file (repeat)")
	f.BoolVar(&req.AllowHostCompat, "allow-host-compat", false, "when no VM can boot, run the workspace on the host inside namespaces")
	f.BoolVar(&idOnly, "id-only", false, "print only the new workspace's id")
	f.BoolVar(&asJSON, "json", false, "print the workspace as JSON")
	return cmd
}

func (a *app) wsListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List workspaces, newest activity first",
		Example: "  pyro workspace list\n  pyro workspace list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := a.sdk("workspace").ListWorkspaces(cmd.Context())
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, list, func(w io.Writer) {
				if list.Count == 0 {
					fmt.Fprintln(w, "No workspaces.")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSTATE\tENVIRONMENT\tCOMMANDS\tLAST ACTIVITY\tEXPIRES\tSERVICES\tLABELS")
				for _, ws := range list.Workspaces {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d/%d\t%s\n", ws.WorkspaceID, orDash(ws.Name), ws.State, ws.Environment,
						ws.CommandCount, ws.LastActivityAt.Local().Format(time.DateTime), ws.ExpiresAt.Local().Format(time.DateTime),
						ws.RunningServiceCount, ws.ServiceCount, orDash(formatLabels(ws.Labels)))
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) wsUpdateCommand() *cobra.Command {
	var name string
	var labels, clear []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "update WORKSPACE",
		Short:   "Rename a workspace or change its labels",
		Example: "  pyro workspace update ws-0123456789abcdef --name fix-123 --label owner=codex --clear-label issue",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := pyro.WorkspaceUpdateRequest{Workspace: args[0], ClearLabels: clear}
			if cmd.Flags().Changed("name") {
				req.Name = &name
			}
			var err error
			if req.Labels, err = parseLabels(labels); err != nil {
				return a.fail(asJSON, exitUsage, err)
			}
			ws, err := a.sdk("workspace").UpdateWorkspace(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, ws, func(w io.Writer) { printWorkspace(w, ws) })
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "new name (empty clears it)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "KEY=VALUE label to set (repeat)")
	cmd.Flags().StringArrayVar(&clear, "clear-label", nil, "label key to remove (repeat)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

// simpleWS builds a command that takes one workspace and prints a payload.
func (a *app) simpleWS(use, short, example string, call func(cmd *cobra.Command, ws string) (any, error), text func(io.Writer, any)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: use + " WORKSPACE", Short: short, Example: example, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := call(cmd, args[0])
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, v, func(w io.Writer) { text(w, v) })
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsStatusCommand() *cobra.Command {
	return a.simpleWS("status", "Show a workspace", "  pyro workspace status fix-123",
		func(cmd *cobra.Command, ws string) (any, error) {
			return a.sdk("workspace").WorkspaceStatus(cmd.Context(), ws)
		},
		func(w io.Writer, v any) { printWorkspace(w, v.(*pyro.Workspace)) })
}

func (a *app) wsStopCommand() *cobra.Command {
	return a.simpleWS("stop", "Flush and power off a workspace's VM, keeping its disk", "  pyro workspace stop fix-123",
		func(cmd *cobra.Command, ws string) (any, error) {
			return a.sdk("workspace").StopWorkspace(cmd.Context(), ws)
		},
		func(w io.Writer, v any) { printWorkspace(w, v.(*pyro.Workspace)) })
}

func (a *app) wsStartCommand() *cobra.Command {
	return a.simpleWS("start", "Boot a stopped workspace again with the same disk", "  pyro workspace start fix-123",
		func(cmd *cobra.Command, ws string) (any, error) {
			return a.sdk("workspace").StartWorkspace(cmd.Context(), ws)
		},
		func(w io.Writer, v any) { printWorkspace(w, v.(*pyro.Workspace)) })
}

func (a *app) wsLogsCommand() *cobra.Command {
	return a.simpleWS("logs", "Show the commands run in a workspace", "  pyro workspace logs fix-123",
		func(cmd *cobra.Command, ws string) (any, error) {
			return a.sdk("workspace").LogsWorkspace(cmd.Context(), ws)
		},
		func(w io.Writer, v any) {
			logs := v.(*pyro.WorkspaceLogs)
			if logs.Count == 0 {
				fmt.Fprintln(w, "No commands yet.")
			}
			for _, e := range logs.Entries {
				fmt.Fprintf(w, "#%d %s $ %s\n", e.Seq, e.StartedAt.Local().Format(time.DateTime), e.Command)
				fmt.Fprintf(w, "   exit %d in %d ms", e.ExitCode, e.DurationMs)
				if e.TimedOut {
					fmt.Fprint(w, " (timed out)")
				}
				fmt.Fprintln(w)
			}
		})
}

func (a *app) wsSummaryCommand() *cobra.Command {
	return a.simpleWS("summary", "Review what happened in a workspace", "  pyro workspace summary fix-123",
		func(cmd *cobra.Command, ws string) (any, error) {
			return a.sdk("workspace").SummarizeWorkspace(cmd.Context(), ws)
		},
		func(w io.Writer, v any) {
			s := v.(*pyro.WorkspaceSummary)
			printWorkspace(w, s.Workspace)
			fmt.Fprintf(w, "\nCommands: %d (%d failed)\n", len(s.Commands), s.FailedCount)
			for _, c := range s.Commands {
				fmt.Fprintf(w, "  exit %-3d %s\n", c.ExitCode, c.Command)
			}
			d := s.DiffSummary
			fmt.Fprintf(w, "Changes since the baseline: %d added, %d modified, %d deleted, %d binary, %d type changes\n",
				d.Added, d.Modified, d.Deleted, d.Binary, d.TypeChanged)
			for _, c := range s.ChangedFiles {
				fmt.Fprintf(w, "  %-12s %s\n", c.Change, c.Path)
			}
			fmt.Fprintf(w, "Services: %d\nSnapshots: %s\n", len(s.Services), strings.Join(s.Snapshots, ", "))
		})
}

func (a *app) wsDiffCommand() *cobra.Command {
	return a.simpleWS("diff", "Show changes of /workspace since the baseline", "  pyro workspace diff fix-123",
		func(cmd *cobra.Command, ws string) (any, error) {
			return a.sdk("workspace").DiffWorkspace(cmd.Context(), ws)
		},
		func(w io.Writer, v any) {
			d := v.(*pyro.DiffResult)
			fmt.Fprint(w, d.Patch)
			s := d.Summary
			fmt.Fprintln(a.stderr, progress.FormatLine("diff", "changed", strconv.FormatBool(d.Changed), "added", strconv.Itoa(s.Added),
				"modified", strconv.Itoa(s.Modified), "deleted", strconv.Itoa(s.Deleted), "binary", strconv.Itoa(s.Binary), "type_changed", strconv.Itoa(s.TypeChanged)))
		})
}

func (a *app) wsDeleteCommand() *cobra.Command {
	var asJSON, force bool
	cmd := &cobra.Command{
		Use: "delete WORKSPACE", Short: "Stop a workspace's VM and remove everything of it",
		Example: "  pyro workspace delete fix-123", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.sdk("workspace").DeleteWorkspace(cmd.Context(), pyro.DeleteRequest{Workspace: args[0], Force: force})
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) { fmt.Fprintf(w, "Deleted: %s\n", res.WorkspaceID) })
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even while commands run in it")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsResetCommand() *cobra.Command {
	var asJSON bool
	var snapshot string
	cmd := &cobra.Command{
		Use:   "reset WORKSPACE",
		Short: "Replace the VM by a fresh one whose /workspace is the baseline",
		Long: `Reset boots a fresh VM for the workspace with /workspace restored from the
baseline. The id, name, labels and baseline stay; the command history is
cleared.`,
		Example: "  pyro workspace reset fix-123", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := a.sdk("workspace").ResetWorkspace(cmd.Context(), pyro.ResetRequest{Workspace: args[0], Snapshot: snapshot})
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, ws, func(w io.Writer) { printWorkspace(w, ws) })
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "baseline", "the snapshot to reset to")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsExecCommand() *cobra.Command {
	var req pyro.WorkspaceExecRequest
	var asJSON bool
	var secretEnv []string
	cmd := &cobra.Command{
		Use:   "exec WORKSPACE [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a workspace",
		Long: `Exec runs COMMAND in the workspace (in /workspace, or --cwd under it). Its output
goes to stdout and stderr and pyro exits with its exit code (124 on timeout, 125
when pyro failed).`,
		Example: `  pyro workspace exec fix-123 -- make test
  pyro workspace exec fix-123 --cwd src --timeout-seconds 300 -- go test ./...`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("give the workspace, then the command after --: pyro workspace exec WORKSPACE -- COMMAND")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(secretEnv) > 0 {
				return a.fail(asJSON, exitPyroFailed, errs.New(errs.Unavailable, "run without --secret-env", "workspace secrets are not supported yet"))
			}
			req.Workspace, req.Command = args[0], args[1:]
			if !asJSON {
				req.Stdout, req.Stderr = a.stdout, a.stderr
			}
			res, err := a.sdk("workspace-exec").ExecWorkspace(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, runFailCode(err), err)
			}
			if asJSON {
				writeJSON(a.stdout, res)
			} else {
				kv := []string{"workspace_id", res.WorkspaceID, "exit_code", strconv.Itoa(res.ExitCode), "duration_ms", strconv.FormatInt(res.DurationMs, 10)}
				if res.TimedOut {
					kv = append(kv, "timed_out", "true")
				}
				if res.StdoutTruncated || res.StderrTruncated {
					kv = append(kv, "truncated", "true")
				}
				fmt.Fprintln(a.stderr, progress.FormatLine("workspace-exec", kv...))
			}
			if res.ExitCode != 0 {
				return &exitError{code: res.ExitCode}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&req.TimeoutSeconds, "timeout-seconds", pyro.DefaultExecTimeoutSec, "kill the command after this long (exit 124)")
	cmd.Flags().StringVar(&req.Cwd, "cwd", "/workspace", "working directory, under /workspace")
	cmd.Flags().StringArrayVar(&secretEnv, "secret-env", nil, "NAME[=ENV_VAR]: a secret as an environment variable (repeat)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) wsSyncPushCommand() *cobra.Command {
	var dest string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "push WORKSPACE SOURCE_PATH",
		Short: "Copy a host directory or archive into /workspace",
		Long: `Push copies a directory, .tar, .tar.gz or .tgz into /workspace (or --dest under
it). It is not atomic: if it fails halfway, 'pyro workspace reset' recovers.`,
		Example: "  pyro workspace sync push fix-123 ./changes --dest src",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.sdk("workspace").SyncPush(cmd.Context(), pyro.SyncPushRequest{Workspace: args[0], SourcePath: args[1], Dest: dest})
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "Pushed %d entries (%s) from %s to %s\n", res.Files, humanBytes(res.Bytes), res.SourcePath, res.Dest)
			})
		},
	}
	cmd.Flags().StringVar(&dest, "dest", "/workspace", "destination directory under /workspace")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsFileListCommand() *cobra.Command {
	var recursive, asJSON bool
	cmd := &cobra.Command{
		Use: "list WORKSPACE [PATH]", Short: "List a directory under /workspace",
		Example: "  pyro workspace file list fix-123 src --recursive", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := pyro.FileListRequest{Workspace: args[0], Recursive: recursive}
			if len(args) == 2 {
				req.Path = args[1]
			}
			res, err := a.sdk("workspace").ListFiles(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) {
				for _, e := range res.Entries {
					switch e.ArtifactType {
					case "directory":
						fmt.Fprintf(w, "%s/\n", e.Path)
					case "symlink":
						fmt.Fprintf(w, "%s -> %s\n", e.Path, e.LinkTarget)
					default:
						fmt.Fprintf(w, "%s (%d bytes)\n", e.Path, e.SizeBytes)
					}
				}
				if res.Truncated {
					fmt.Fprintln(a.stderr, "[file-list] warning=truncated")
				}
			})
		},
	}
	cmd.Flags().BoolVar(&recursive, "recursive", false, "list subdirectories too")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsFileReadCommand() *cobra.Command {
	var maxBytes int64
	var contentOnly, asJSON bool
	cmd := &cobra.Command{
		Use: "read WORKSPACE PATH", Short: "Read a file under /workspace",
		Example: "  pyro workspace file read fix-123 src/app.py --content-only", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.sdk("workspace").ReadFile(cmd.Context(), pyro.FileReadRequest{Workspace: args[0], Path: args[1], MaxBytes: maxBytes})
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) {
				if !contentOnly {
					fmt.Fprintf(a.stderr, "%s\n", progress.FormatLine("file-read", "path", res.Path, "size_bytes", strconv.FormatInt(res.SizeBytes, 10),
						"truncated", strconv.FormatBool(res.Truncated), "encoding", res.Encoding))
				}
				fmt.Fprint(w, res.Content)
			})
		},
	}
	cmd.Flags().Int64Var(&maxBytes, "max-bytes", pyro.DefaultFileReadBytes, "read at most this many bytes")
	cmd.Flags().BoolVar(&contentOnly, "content-only", false, "print only the content")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsFileWriteCommand() *cobra.Command {
	var text, textFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use: "write WORKSPACE PATH", Short: "Write a text file under /workspace",
		Example: "  pyro workspace file write fix-123 src/app.py --text 'print(\"hi\")'\n  pyro workspace file write fix-123 notes.md --text-file ./notes.md",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := pyro.FileWriteRequest{Workspace: args[0], Path: args[1], Text: text}
			switch {
			case cmd.Flags().Changed("text") == cmd.Flags().Changed("text-file"):
				return a.fail(asJSON, exitUsage, errs.New(errs.Invalid, "give --text TEXT or --text-file PATH", "give exactly one of --text and --text-file"))
			case textFile != "":
				data, err := readBounded(textFile, pyro.MaxFileWriteBytes)
				if err != nil {
					return a.fail(asJSON, exitUsage, err)
				}
				req.Text = string(data)
			}
			res, err := a.sdk("workspace").WriteFile(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) { fmt.Fprintf(w, "Wrote %d bytes to %s\n", res.BytesWritten, res.Path) })
		},
	}
	cmd.Flags().StringVar(&text, "text", "", "the file's new content")
	cmd.Flags().StringVar(&textFile, "text-file", "", "a host file whose content to write")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

// readBounded reads a host file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "", "reading %s", path)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "", "reading %s", path)
	}
	if int64(len(data)) > limit {
		return nil, errs.New(errs.Invalid, "", "%s is larger than the %d-byte limit", path, limit)
	}
	return data, nil
}

func (a *app) wsPatchApplyCommand() *cobra.Command {
	var patchText, patchFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "apply WORKSPACE",
		Short: "Apply a unified diff under /workspace",
		Long: `Apply checks every hunk of every file before changing anything; a failing hunk
names the file and the line.`,
		Example: "  pyro workspace patch apply fix-123 --patch-file fix.patch\n  pyro workspace patch apply fix-123 --patch \"$(git diff)\"",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := pyro.PatchApplyRequest{Workspace: args[0], Patch: patchText}
			switch {
			case cmd.Flags().Changed("patch") == cmd.Flags().Changed("patch-file"):
				return a.fail(asJSON, exitUsage, errs.New(errs.Invalid, "give --patch TEXT or --patch-file PATH", "give exactly one of --patch and --patch-file"))
			case patchFile != "":
				data, err := readBounded(patchFile, pyro.MaxPatchBytes)
				if err != nil {
					return a.fail(asJSON, exitUsage, err)
				}
				req.Patch = string(data)
			}
			res, err := a.sdk("workspace").ApplyPatch(cmd.Context(), req)
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) {
				for _, p := range res.Changed {
					fmt.Fprintln(w, p)
				}
				s := res.Summary
				fmt.Fprintf(w, "%d files changed (%d created, %d deleted), %d hunks, +%d -%d lines\n", s.Files, s.Created, s.Deleted, s.Hunks, s.AddedLines, s.RemovedLines)
			})
		},
	}
	cmd.Flags().StringVar(&patchText, "patch", "", "the unified diff")
	cmd.Flags().StringVar(&patchFile, "patch-file", "", "a host file holding the unified diff")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func (a *app) wsExportCommand() *cobra.Command {
	var output string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "export WORKSPACE PATH --output HOST_PATH",
		Short:   "Copy a file or directory of /workspace to the host",
		Example: "  pyro workspace export fix-123 note.txt --output ./note.txt\n  pyro workspace export fix-123 src --output ./src-out",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.sdk("workspace").ExportWorkspace(cmd.Context(), pyro.ExportRequest{Workspace: args[0], Path: args[1], OutputPath: output})
			if err != nil {
				return a.fail(asJSON, failCode(err), err)
			}
			return a.output(asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "Exported %s %s to %s (%d entries, %s)\n", res.ArtifactType, res.Path, res.OutputPath, res.Files, humanBytes(res.Bytes))
			})
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "host path to create (must not exist)")
	cmd.MarkFlagRequired("output")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
