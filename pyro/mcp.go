package pyro

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-sandbox/pyro/internal/buildinfo"
	"github.com/pyro-sandbox/pyro/internal/contract"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/progress"
)

// MCPOptions configures the MCP server.
type MCPOptions struct {
	// Profile picks the tools: vm-run, workspace-core (the default) or
	// workspace-full.
	Profile string
	// HostRoots confine the host paths a caller may name (seed_path,
	// source_path, output_path): each must be inside one of them. Empty
	// means the current directory.
	HostRoots []string
}

// Bounds of what an MCP caller may send.
const (
	maxToolArgumentBytes = 8 << 20
	maxCommandBytes      = 256 << 10
)

const mcpInstructions = `pyro runs commands in disposable Linux microVMs on this host.
Use vm_run for one isolated command. For real work on code, create a workspace (workspace_create,
optionally seeded from a host directory), then run commands (workspace_exec), read and edit files
(workspace_file_read, workspace_file_write, workspace_patch_apply), review changes (workspace_diff,
workspace_summary), copy results out (workspace_export), and delete it when done. workspace_reset
returns to the seeded baseline. Workspaces are found again by id or name (workspace_list).`

// CreateServer builds the MCP server of a profile on this client. Run it
// with server.Run(ctx, &mcp.StdioTransport{}) or serve it over HTTP with
// mcp.NewStreamableHTTPHandler.
func (c *Client) CreateServer(opts MCPOptions) (*mcp.Server, error) {
	if opts.Profile == "" {
		opts.Profile = string(contract.DefaultProfile)
	}
	profile, ok := contract.ParseProfile(opts.Profile)
	if !ok {
		return nil, errs.New(errs.Invalid, "use vm-run, workspace-core or workspace-full", "unknown profile %q", opts.Profile)
	}
	roots, err := hostRoots(opts.HostRoots)
	if err != nil {
		return nil, err
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "pyro", Title: "pyro", Version: buildinfo.Version()},
		&mcp.ServerOptions{Instructions: mcpInstructions})
	t := &mcpTools{c: c, roots: roots, maxLens: map[string]map[string]int{}}
	// Oversized arguments are refused before they are validated, whose
	// errors would echo them back whole.
	s.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if ctr, ok := req.(*mcp.CallToolRequest); ok {
				if msg := t.checkSizes(ctr.Params.Name, ctr.Params.Arguments); msg != "" {
					return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}, nil
				}
			}
			return next(ctx, method, req)
		}
	})
	for _, op := range contract.Tools(profile) {
		reg, ok := t.registry()[op.Tool]
		if !ok {
			return nil, fmt.Errorf("tool %s has no handler", op.Tool)
		}
		reg(s, op)
	}
	return s, nil
}

func hostRoots(in []string) ([]string, error) {
	if len(in) == 0 {
		in = []string{"."}
	}
	var out []string
	for _, r := range in {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, err
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		out = append(out, abs)
	}
	return out, nil
}

// mcpTools holds the handlers; each calls one SDK method.
type mcpTools struct {
	c     *Client
	roots []string
	// maxLens are the string length bounds of each tool's arguments.
	maxLens map[string]map[string]int
}

// checkSizes bounds a call's arguments before the SDK parses them: the
// whole, and each string argument against its schema's maxLength. It
// returns the error text, or "".
func (t *mcpTools) checkSizes(tool string, args json.RawMessage) string {
	const hint = "\nhint: send large files with workspace_sync_push and read them in parts"
	if len(args) > maxToolArgumentBytes {
		return fmt.Sprintf("[invalid_argument] the arguments are %d bytes, over the %d-byte limit%s", len(args), maxToolArgumentBytes, hint)
	}
	limits := t.maxLens[tool]
	if len(limits) == 0 || len(args) < 1024 {
		return ""
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(args, &fields) != nil {
		return "" // the SDK reports malformed arguments
	}
	for name, raw := range fields {
		limit, ok := limits[name]
		if !ok || len(raw) <= limit {
			continue
		}
		var v string
		if json.Unmarshal(raw, &v) == nil && len(v) > limit {
			return fmt.Sprintf("[invalid_argument] argument %s is %d bytes, over the %d-byte limit%s", name, len(v), limit, hint)
		}
	}
	return ""
}

// toolError is an error as a model sees it: what failed, then what to do.
type toolError struct{ err error }

func (e toolError) Error() string {
	msg := e.err.Error()
	if hint := errs.HintOf(e.err); hint != "" {
		msg += "\nhint: " + hint
	}
	return fmt.Sprintf("[%s] %s", errs.KindOf(e.err), msg)
}

// hostPath checks a host path an MCP caller named against the allowed
// roots. The deepest existing ancestor is resolved, so a symlink cannot
// lead out.
func (t *mcpTools) hostPath(what, p string) (string, error) {
	if p == "" {
		return "", errs.New(errs.Invalid, "", "%s is required", what)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	resolved := abs
	for dir, rest := abs, ""; ; {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			resolved = filepath.Join(real, rest)
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
	for _, root := range t.roots {
		if resolved == root || strings.HasPrefix(resolved, root+string(filepath.Separator)) {
			return abs, nil
		}
	}
	return "", errs.New(errs.Invalid, "name a path under "+strings.Join(t.roots, " or ")+" (the server's allowed host roots, set with --host-root)",
		"%s %s is outside the host directories this server may use", what, p)
}

// progressReporter sends pyro's phases as MCP progress notifications when
// the caller asked for them.
type progressReporter struct {
	ctx   context.Context
	req   *mcp.CallToolRequest
	token any
	n     atomic.Int64
}

func (p *progressReporter) Phase(phase string, kv ...string) {
	n := p.n.Add(1)
	p.req.Session.NotifyProgress(p.ctx, &mcp.ProgressNotificationParams{
		ProgressToken: p.token, Progress: float64(n), Message: progress.FormatLine("pyro", append([]string{"phase", phase}, kv...)...),
	})
}

func (p *progressReporter) Update(done, total int64, note string) {
	n := p.n.Add(1)
	p.req.Session.NotifyProgress(p.ctx, &mcp.ProgressNotificationParams{
		ProgressToken: p.token, Progress: float64(n), Message: note,
	})
}

// clientFor returns the client to serve one call with: progress goes to
// the caller when it sent a progress token.
func (t *mcpTools) clientFor(ctx context.Context, req *mcp.CallToolRequest) *Client {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return t.c
	}
	return t.c.WithProgress(&progressReporter{ctx: ctx, req: req, token: token})
}

type registrar func(s *mcp.Server, op contract.Operation)

// add registers a typed tool from its contract entry. schema adjusts the
// inferred input schema (limits, enums, descriptions of defaults).
func add[In, Out any](t *mcpTools, schema func(*jsonschema.Schema), h func(ctx context.Context, c *Client, in In) (Out, error)) registrar {
	return func(s *mcp.Server, op contract.Operation) {
		in, err := jsonschema.For[In](nil)
		if err != nil {
			panic(fmt.Sprintf("tool %s: %v", op.Tool, err))
		}
		if schema != nil {
			schema(in)
		}
		limits := map[string]int{}
		for name, p := range in.Properties {
			if p.MaxLength != nil {
				limits[name] = *p.MaxLength
			}
		}
		t.maxLens[op.Tool] = limits
		destructive, openWorld := op.Destructive, false
		tool := &mcp.Tool{
			Name: op.Tool, Title: op.Title, Description: op.Description, InputSchema: in,
			Annotations: &mcp.ToolAnnotations{Title: op.Title, ReadOnlyHint: op.ReadOnly, IdempotentHint: op.Idempotent,
				DestructiveHint: &destructive, OpenWorldHint: &openWorld},
		}
		mcp.AddTool(s, tool, func(ctx context.Context, req *mcp.CallToolRequest, input In) (*mcp.CallToolResult, Out, error) {
			out, err := h(ctx, t.clientFor(ctx, req), input)
			if err != nil {
				var zero Out
				return nil, zero, toolError{err}
			}
			return nil, out, nil
		})
	}
}

func maxLen(s *jsonschema.Schema, prop string, n int) {
	if p := s.Properties[prop]; p != nil {
		p.MaxLength = jsonschema.Ptr(n)
	}
}

func between(s *jsonschema.Schema, prop string, lo, hi float64) {
	if p := s.Properties[prop]; p != nil {
		p.Minimum, p.Maximum = jsonschema.Ptr(lo), jsonschema.Ptr(hi)
	}
}

func sizeLimits(s *jsonschema.Schema) {
	between(s, "vcpu_count", 1, MaxVCPUs)
	between(s, "mem_mib", MinMemMiB, MaxMemMiB)
	between(s, "timeout_seconds", 1, 86400)
	between(s, "ttl_seconds", 1, 604800)
	maxLen(s, "command", maxCommandBytes)
	maxLen(s, "environment", 255)
	maxLen(s, "workspace_id", 64)
	maxLen(s, "path", 4096)
	maxLen(s, "name", 64)
}

// Inputs of the tools. Parameter names are the snake_case forms of the
// CLI flags (CONTRACT.md §5).

type vmRunIn struct {
	Environment     string `json:"environment,omitempty" jsonschema:"environment to boot (default debian:12; see the catalog: debian:12, debian:12-base, debian:12-build)"`
	Command         string `json:"command" jsonschema:"shell command, run with /bin/sh -c"`
	VCPUCount       int    `json:"vcpu_count,omitempty" jsonschema:"virtual CPUs (default 1)"`
	MemMiB          int    `json:"mem_mib,omitempty" jsonschema:"memory in MiB (default 1024)"`
	TimeoutSeconds  int    `json:"timeout_seconds,omitempty" jsonschema:"kill the command after this many seconds (default 30)"`
	TTLSeconds      int    `json:"ttl_seconds,omitempty" jsonschema:"delete the VM after this many seconds whatever happens (default 600)"`
	Network         bool   `json:"network,omitempty" jsonschema:"give the guest outbound network access (not supported yet)"`
	AllowHostCompat bool   `json:"allow_host_compat,omitempty" jsonschema:"when no VM can boot, run on the host inside namespaces instead of failing"`
}

type wsRef struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id (ws-...) or name"`
}

type wsCreateIn struct {
	Environment     string            `json:"environment,omitempty" jsonschema:"environment to boot (default debian:12)"`
	SeedPath        string            `json:"seed_path,omitempty" jsonschema:"host directory, .tar, .tar.gz or .tgz whose content becomes /workspace"`
	Name            string            `json:"name,omitempty" jsonschema:"unique name usable instead of the id"`
	Labels          map[string]string `json:"labels,omitempty" jsonschema:"labels to find the workspace by"`
	VCPUCount       int               `json:"vcpu_count,omitempty" jsonschema:"virtual CPUs (default 1)"`
	MemMiB          int               `json:"mem_mib,omitempty" jsonschema:"memory in MiB (default 1024)"`
	TTLSeconds      int               `json:"ttl_seconds,omitempty" jsonschema:"delete the workspace after this many seconds without activity (default 3600)"`
	AllowHostCompat bool              `json:"allow_host_compat,omitempty" jsonschema:"when no VM can boot, run the workspace on the host inside namespaces instead of failing"`
}

type wsUpdateIn struct {
	WorkspaceID string            `json:"workspace_id" jsonschema:"workspace id or name"`
	Name        *string           `json:"name,omitempty" jsonschema:"new name; empty string clears it"`
	Labels      map[string]string `json:"labels,omitempty" jsonschema:"labels to set"`
	ClearLabels []string          `json:"clear_labels,omitempty" jsonschema:"label keys to remove"`
}

type wsSyncIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	SourcePath  string `json:"source_path" jsonschema:"host directory, .tar, .tar.gz or .tgz to copy in"`
	Dest        string `json:"dest,omitempty" jsonschema:"destination directory under /workspace (default /workspace)"`
}

type wsExecIn struct {
	WorkspaceID    string `json:"workspace_id" jsonschema:"workspace id or name"`
	Command        string `json:"command" jsonschema:"shell command, run with /bin/sh -c"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"kill the command after this many seconds (default 30)"`
	Cwd            string `json:"cwd,omitempty" jsonschema:"working directory under /workspace (default /workspace)"`
}

type wsFileListIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	Path        string `json:"path,omitempty" jsonschema:"directory under /workspace (default /workspace)"`
	Recursive   bool   `json:"recursive,omitempty" jsonschema:"list the whole tree"`
}

type wsFileReadIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	Path        string `json:"path" jsonschema:"file under /workspace (relative paths are under /workspace)"`
	MaxBytes    int64  `json:"max_bytes,omitempty" jsonschema:"read at most this many bytes (default 1048576)"`
}

type wsFileWriteIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	Path        string `json:"path" jsonschema:"file under /workspace to create or replace"`
	Text        string `json:"text" jsonschema:"the file's complete new content (UTF-8)"`
}

type wsPatchIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	Patch       string `json:"patch" jsonschema:"unified diff; paths are relative to /workspace (a/ and b/ prefixes allowed)"`
}

type wsExportIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	Path        string `json:"path" jsonschema:"file or directory under /workspace"`
	OutputPath  string `json:"output_path" jsonschema:"host path to create; must not exist"`
}

type wsResetIn struct {
	WorkspaceID  string `json:"workspace_id" jsonschema:"workspace id or name"`
	SnapshotName string `json:"snapshot_name,omitempty" jsonschema:"snapshot to reset to (default baseline)"`
}

type wsDeleteIn struct {
	WorkspaceID string `json:"workspace_id" jsonschema:"workspace id or name"`
	Force       bool   `json:"force,omitempty" jsonschema:"delete even while a command runs in it"`
}

type empty struct{}

func shellCommand(cmd string) ([]string, error) {
	if strings.TrimSpace(cmd) == "" {
		return nil, errs.New(errs.Invalid, "give a shell command, e.g. 'git --version'", "empty command")
	}
	return []string{"/bin/sh", "-c", cmd}, nil
}

func (t *mcpTools) registry() map[string]registrar {
	return map[string]registrar{
		"vm_run": add(t, sizeLimits, func(ctx context.Context, c *Client, in vmRunIn) (*RunResult, error) {
			argv, err := shellCommand(in.Command)
			if err != nil {
				return nil, err
			}
			res, err := c.Run(ctx, RunRequest{Environment: in.Environment, Command: argv, VCPUCount: in.VCPUCount, MemMiB: in.MemMiB,
				TimeoutSeconds: in.TimeoutSeconds, TTLSeconds: in.TTLSeconds, Network: in.Network, AllowHostCompat: in.AllowHostCompat})
			if res != nil {
				res.Command = in.Command
			}
			return res, err
		}),
		"workspace_create": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsCreateIn) (*Workspace, error) {
			if in.SeedPath != "" {
				p, err := t.hostPath("seed_path", in.SeedPath)
				if err != nil {
					return nil, err
				}
				in.SeedPath = p
			}
			return c.CreateWorkspace(ctx, WorkspaceCreateRequest{Environment: in.Environment, SeedPath: in.SeedPath, Name: in.Name,
				Labels: in.Labels, VCPUCount: in.VCPUCount, MemMiB: in.MemMiB, TTLSeconds: in.TTLSeconds, AllowHostCompat: in.AllowHostCompat})
		}),
		"workspace_list": add(t, nil, func(ctx context.Context, c *Client, _ empty) (*WorkspaceList, error) {
			return c.ListWorkspaces(ctx)
		}),
		"workspace_update": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsUpdateIn) (*Workspace, error) {
			return c.UpdateWorkspace(ctx, WorkspaceUpdateRequest{Workspace: in.WorkspaceID, Name: in.Name, Labels: in.Labels, ClearLabels: in.ClearLabels})
		}),
		"workspace_status": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsRef) (*Workspace, error) {
			return c.WorkspaceStatus(ctx, in.WorkspaceID)
		}),
		"workspace_logs": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsRef) (*WorkspaceLogs, error) {
			return c.LogsWorkspace(ctx, in.WorkspaceID)
		}),
		"workspace_summary": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsRef) (*WorkspaceSummary, error) {
			return c.SummarizeWorkspace(ctx, in.WorkspaceID)
		}),
		"workspace_sync_push": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsSyncIn) (*SyncPushResult, error) {
			p, err := t.hostPath("source_path", in.SourcePath)
			if err != nil {
				return nil, err
			}
			return c.SyncPush(ctx, SyncPushRequest{Workspace: in.WorkspaceID, SourcePath: p, Dest: in.Dest})
		}),
		"workspace_exec": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsExecIn) (*ExecResult, error) {
			argv, err := shellCommand(in.Command)
			if err != nil {
				return nil, err
			}
			res, err := c.ExecWorkspace(ctx, WorkspaceExecRequest{Workspace: in.WorkspaceID, Command: argv, TimeoutSeconds: in.TimeoutSeconds, Cwd: in.Cwd})
			if res != nil {
				res.Command = in.Command
			}
			return res, err
		}),
		"workspace_file_list": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsFileListIn) (*FileList, error) {
			return c.ListFiles(ctx, FileListRequest{Workspace: in.WorkspaceID, Path: in.Path, Recursive: in.Recursive})
		}),
		"workspace_file_read": add(t, func(s *jsonschema.Schema) {
			sizeLimits(s)
			between(s, "max_bytes", 1, maxPatchedFileBytes)
		}, func(ctx context.Context, c *Client, in wsFileReadIn) (*FileReadResult, error) {
			return c.ReadFile(ctx, FileReadRequest{Workspace: in.WorkspaceID, Path: in.Path, MaxBytes: in.MaxBytes})
		}),
		"workspace_file_write": add(t, func(s *jsonschema.Schema) {
			sizeLimits(s)
			maxLen(s, "text", MaxFileWriteBytes)
		}, func(ctx context.Context, c *Client, in wsFileWriteIn) (*FileWriteResult, error) {
			return c.WriteFile(ctx, FileWriteRequest{Workspace: in.WorkspaceID, Path: in.Path, Text: in.Text})
		}),
		"workspace_patch_apply": add(t, func(s *jsonschema.Schema) {
			sizeLimits(s)
			maxLen(s, "patch", MaxPatchBytes)
		}, func(ctx context.Context, c *Client, in wsPatchIn) (*PatchApplyResult, error) {
			return c.ApplyPatch(ctx, PatchApplyRequest{Workspace: in.WorkspaceID, Patch: in.Patch})
		}),
		"workspace_diff": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsRef) (*DiffResult, error) {
			return c.DiffWorkspace(ctx, in.WorkspaceID)
		}),
		"workspace_export": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsExportIn) (*ExportResult, error) {
			p, err := t.hostPath("output_path", in.OutputPath)
			if err != nil {
				return nil, err
			}
			return c.ExportWorkspace(ctx, ExportRequest{Workspace: in.WorkspaceID, Path: in.Path, OutputPath: p})
		}),
		"workspace_reset": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsResetIn) (*Workspace, error) {
			return c.ResetWorkspace(ctx, ResetRequest{Workspace: in.WorkspaceID, Snapshot: in.SnapshotName})
		}),
		"workspace_delete": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsDeleteIn) (*DeleteResult, error) {
			return c.DeleteWorkspace(ctx, DeleteRequest{Workspace: in.WorkspaceID, Force: in.Force})
		}),
		"workspace_start": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsRef) (*Workspace, error) {
			return c.StartWorkspace(ctx, in.WorkspaceID)
		}),
		"workspace_stop": add(t, sizeLimits, func(ctx context.Context, c *Client, in wsRef) (*Workspace, error) {
			return c.StopWorkspace(ctx, in.WorkspaceID)
		}),
	}
}
