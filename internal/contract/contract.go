// Package contract is the one table of pyro's public operations: each MCP
// tool, the CLI command that does the same, the profiles that expose it,
// and what it does to the world. The MCP server registers its tools from
// this table; tests check the CLI and the MCP server against it. A change
// here is a change of the public contract.
package contract

// Profile is a named set of MCP tools.
type Profile string

// The profiles of CONTRACT.md §5.
const (
	VMRun         Profile = "vm-run"
	WorkspaceCore Profile = "workspace-core"
	WorkspaceFull Profile = "workspace-full"
)

// DefaultProfile is what `pyro mcp serve` serves without --profile.
const DefaultProfile = WorkspaceCore

// Profiles lists every profile, narrowest first.
var Profiles = []Profile{VMRun, WorkspaceCore, WorkspaceFull}

// Operation is one public operation.
type Operation struct {
	// Tool is the MCP tool name.
	Tool string
	// CLI is the command path ("workspace exec").
	CLI string
	// Title is a short human name.
	Title string
	// Description is written for a model: what it does, when to use it,
	// what it returns, its limits.
	Description string
	// Profiles that expose the tool.
	Profiles []Profile
	// ReadOnly, Destructive, Idempotent are the MCP annotations.
	ReadOnly, Destructive, Idempotent bool
	// Pending marks an operation of the contract that is not built yet: it
	// is absent from every profile until it is.
	Pending bool
}

var core = []Profile{WorkspaceCore, WorkspaceFull}
var full = []Profile{WorkspaceFull}

// Operations is the table, in the order tools are listed.
var Operations = []Operation{
	{Tool: "vm_run", CLI: "run", Title: "Run a command in a fresh VM", Profiles: []Profile{VMRun, WorkspaceCore, WorkspaceFull},
		Description: "Run one shell command in a fresh, disposable Linux microVM and delete the VM afterwards. Use it for a quick, " +
			"isolated check that needs no state (e.g. 'git --version', 'python3 -c ...'). The command runs with /bin/sh -c in /workspace " +
			"of the environment (default debian:12). Returns exit_code, stdout, stderr (each capped at 1 MiB; *_truncated says when), " +
			"duration_ms and timed_out (exit_code 124). For several commands on the same files, create a workspace instead."},
	{Tool: "workspace_create", CLI: "workspace create", Title: "Create a workspace", Profiles: core,
		Description: "Create a persistent sandbox: a Linux microVM whose /workspace persists across calls until workspace_delete or its TTL " +
			"(ttl_seconds of inactivity, default 3600). Optionally seed /workspace from a host directory or .tar/.tar.gz/.tgz (seed_path) and " +
			"record that content as the baseline for workspace_diff and workspace_reset. Returns the workspace (workspace_id, name, state...). " +
			"Use the id or the optional unique name in every later call."},
	{Tool: "workspace_list", CLI: "workspace list", Title: "List workspaces", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "List workspaces, newest activity first, with state, name, labels, expiry and command counts. Use it to find a workspace created earlier."},
	{Tool: "workspace_update", CLI: "workspace update", Title: "Rename or relabel a workspace", Profiles: core, Idempotent: true,
		Description: "Change a workspace's name and labels (labels are merged; clear_labels removes keys). Returns the workspace."},
	{Tool: "workspace_status", CLI: "workspace status", Title: "Show a workspace", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "Return one workspace's current state (started, stopped, failed), last command, activity and expiry."},
	{Tool: "workspace_logs", CLI: "workspace logs", Title: "Command history", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "Return the commands run in a workspace (oldest first) with exit codes, durations and the first 16 KiB of their output."},
	{Tool: "workspace_summary", CLI: "workspace summary", Title: "Review a workspace", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "Review what happened in a workspace: commands and failures, files changed since the baseline, services and snapshots. Use it before handing work back."},
	{Tool: "workspace_sync_push", CLI: "workspace sync push", Title: "Copy host files in", Profiles: core,
		Description: "Copy a host directory or .tar/.tar.gz/.tgz (source_path) into /workspace, or into dest under it. Existing files are " +
			"overwritten; nothing is deleted. Not atomic: after a failure, workspace_reset recovers."},
	{Tool: "workspace_exec", CLI: "workspace exec", Title: "Run a command in a workspace", Profiles: core,
		Description: "Run a shell command (/bin/sh -c) in a workspace, in /workspace or cwd under it. Files and installed packages persist " +
			"between calls. Returns exit_code, stdout, stderr (each capped at 1 MiB, *_truncated says when), duration_ms; a command that " +
			"runs longer than timeout_seconds (default 30) is killed and returns timed_out true and exit_code 124."},
	{Tool: "workspace_file_list", CLI: "workspace file list", Title: "List files", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "List a directory under /workspace (recursive for the whole tree). Entries have path, artifact_type (file, directory, symlink), size_bytes and link_target."},
	{Tool: "workspace_file_read", CLI: "workspace file read", Title: "Read a file", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "Read a file under /workspace (up to max_bytes, default 1 MiB; truncated says when there is more). Returns content as text, " +
			"or base64 with encoding 'base64' when the file is not UTF-8. Symlinks leading outside /workspace are refused."},
	{Tool: "workspace_file_write", CLI: "workspace file write", Title: "Write a file", Profiles: core, Destructive: true, Idempotent: true,
		Description: "Create or replace a UTF-8 text file under /workspace (parents are created; at most 1 MiB). The write is atomic. Returns bytes_written."},
	{Tool: "workspace_patch_apply", CLI: "workspace patch apply", Title: "Apply a patch", Profiles: core, Destructive: true,
		Description: "Apply a unified diff (as 'git diff' or 'diff -u' print) to files under /workspace. Every hunk of every file is checked " +
			"before any file changes; a hunk that does not apply names the file and line, and nothing changes. Returns changed paths and a summary."},
	{Tool: "workspace_diff", CLI: "workspace diff", Title: "Diff against the baseline", Profiles: core, ReadOnly: true, Idempotent: true,
		Description: "Compare /workspace with its create-time baseline: a unified diff in patch plus a summary (added, modified, deleted, binary, type_changed) and the changed paths."},
	{Tool: "workspace_export", CLI: "workspace export", Title: "Copy files to the host", Profiles: core,
		Description: "Copy a file or directory under /workspace to output_path on the host. output_path must not exist; nothing is ever " +
			"overwritten, and symlinks pointing out of the exported tree are refused."},
	{Tool: "workspace_reset", CLI: "workspace reset", Title: "Reset to the baseline", Profiles: core, Destructive: true, Idempotent: true,
		Description: "Throw away the workspace's VM and changes: boot a fresh VM whose /workspace is the baseline again. The id, name, " +
			"labels and baseline stay; the command history is cleared. Use it when the workspace is broken beyond repair."},
	{Tool: "workspace_delete", CLI: "workspace delete", Title: "Delete a workspace", Profiles: core, Destructive: true,
		Description: "Stop a workspace's VM and delete everything of it. Refused while a command runs in it unless force is true."},

	{Tool: "workspace_start", CLI: "workspace start", Title: "Start a stopped workspace", Profiles: full, Idempotent: true,
		Description: "Boot a stopped workspace again with the same disk."},
	{Tool: "workspace_stop", CLI: "workspace stop", Title: "Stop a workspace", Profiles: full, Idempotent: true,
		Description: "Flush and power off a workspace's VM, keeping its disk for workspace_start."},

	// Not built yet: absent from every profile until their issues land.
	{Tool: "snapshot_create", CLI: "workspace snapshot create", Profiles: full, Pending: true},
	{Tool: "snapshot_list", CLI: "workspace snapshot list", Profiles: full, Pending: true},
	{Tool: "snapshot_delete", CLI: "workspace snapshot delete", Profiles: full, Pending: true},
	{Tool: "shell_open", CLI: "workspace shell open", Profiles: full, Pending: true},
	{Tool: "shell_read", CLI: "workspace shell read", Profiles: full, Pending: true},
	{Tool: "shell_write", CLI: "workspace shell write", Profiles: full, Pending: true},
	{Tool: "shell_signal", CLI: "workspace shell signal", Profiles: full, Pending: true},
	{Tool: "shell_close", CLI: "workspace shell close", Profiles: full, Pending: true},
	{Tool: "service_start", CLI: "workspace service start", Profiles: full, Pending: true},
	{Tool: "service_list", CLI: "workspace service list", Profiles: full, Pending: true},
	{Tool: "service_status", CLI: "workspace service status", Profiles: full, Pending: true},
	{Tool: "service_logs", CLI: "workspace service logs", Profiles: full, Pending: true},
	{Tool: "service_stop", CLI: "workspace service stop", Profiles: full, Pending: true},
	{Tool: "workspace_disk_list", CLI: "workspace disk list", Profiles: full, Pending: true},
	{Tool: "workspace_disk_read", CLI: "workspace disk read", Profiles: full, Pending: true},
	{Tool: "workspace_disk_export", CLI: "workspace disk export", Profiles: full, Pending: true},
	{Tool: "vm_create", Profiles: full, Pending: true},
	{Tool: "vm_start", Profiles: full, Pending: true},
	{Tool: "vm_exec", Profiles: full, Pending: true},
	{Tool: "vm_stop", Profiles: full, Pending: true},
	{Tool: "vm_delete", Profiles: full, Pending: true},
	{Tool: "vm_status", Profiles: full, Pending: true},
	{Tool: "vm_network_info", Profiles: full, Pending: true},
	{Tool: "vm_list_environments", Profiles: full, Pending: true},
	{Tool: "vm_reap_expired", Profiles: full, Pending: true},
}

// PendingParameters are contract parameters of built tools that are not
// built yet; they are left out of the schemas until they are.
var PendingParameters = map[string][]string{
	"workspace_create": {"network_policy", "secrets"},
	"workspace_exec":   {"secret_env"},
}

// Tools returns the operations a profile exposes, built ones only.
func Tools(p Profile) []Operation {
	var out []Operation
	for _, op := range Operations {
		if op.Pending {
			continue
		}
		for _, q := range op.Profiles {
			if q == p {
				out = append(out, op)
			}
		}
	}
	return out
}

// Lookup returns the operation of a tool.
func Lookup(tool string) (Operation, bool) {
	for _, op := range Operations {
		if op.Tool == tool {
			return op, true
		}
	}
	return Operation{}, false
}

// ParseProfile checks a profile name.
func ParseProfile(s string) (Profile, bool) {
	for _, p := range Profiles {
		if string(p) == s {
			return p, true
		}
	}
	return "", false
}
