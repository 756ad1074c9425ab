package pyro

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/patch"
	"github.com/pyro-sandbox/pyro/internal/seed"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/supervisor"
	"github.com/pyro-sandbox/pyro/internal/tarx"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// Limits of workspace operations (the contract's defaults).
const (
	DefaultFileReadBytes  = 1 << 20
	MaxFileWriteBytes     = 1 << 20
	MaxPatchBytes         = 4 << 20
	maxPatchedFileBytes   = 16 << 20
	maxExportBytes        = 64 << 30
	maxExportFiles        = 1 << 20
	DefaultExecTimeoutSec = 30
)

func vmmAccel(s string) vmm.Accelerator {
	if s == string(vmm.KVM) {
		return vmm.KVM
	}
	return vmm.TCG
}

// wrapAgentErr turns an error from the agent or supervisor into one a user
// can act on.
func wrapAgentErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var ae *agentproto.Error
	if errors.As(err, &ae) {
		kind := errs.Internal
		switch ae.Code {
		case agentproto.CodeNotFound:
			kind = errs.NotFound
		case agentproto.CodeInvalid, agentproto.CodePermission:
			kind = errs.Invalid
		case agentproto.CodeCancelled:
			kind = errs.Cancelled
		case "busy":
			kind = errs.Conflict
		}
		return &errs.Error{Kind: kind, Msg: what + ": " + ae.Message}
	}
	if errs.KindOf(err) != errs.Internal {
		return err
	}
	return errs.Wrap(errs.Unavailable, err, "see 'pyro workspace status'", "%s", what)
}

// teeWriter writes to w and, when set, a copy to tee.
type teeWriter struct {
	w   io.Writer
	tee io.Writer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	if t.tee != nil {
		if _, err := t.tee.Write(p); err != nil {
			return 0, err
		}
	}
	return t.w.Write(p)
}

func writeEmptyTar(w io.Writer) error { return tar.NewWriter(w).Close() }

// pushTar streams the tar that produce writes into dest in the guest (a
// copy goes to tee when set) and waits for the agent's result.
func (c *Client) pushTar(ctx context.Context, sess *agentproto.Session, dest string, baseline bool, produce func(*teeWriter) error, tee io.Writer) error {
	st, err := sess.Open(ctx, agentproto.OpTarIn, agentproto.TarInRequest{Path: dest, Baseline: baseline})
	if err != nil {
		return wrapAgentErr(err, "sending files")
	}
	defer st.Close()
	// tar writes each header and file apart: buffer them into full frames,
	// or a tree of small files becomes a storm of tiny ones.
	bw := bufio.NewWriterSize(st.DataWriter(ctx, agentproto.ChannelStdin), agentproto.MaxPayload)
	w := &teeWriter{w: bw, tee: tee}
	perr := produce(w)
	if perr == nil {
		perr = bw.Flush()
	}
	if perr == nil {
		perr = st.CloseSend()
	}
	var res agentproto.TarInResult
	rerr := supervisor.RecvResult(ctx, st, &res)
	if rerr != nil {
		return wrapAgentErr(rerr, "sending files into "+dest)
	}
	return perr
}

// ExecRequest runs a command in a workspace.
type WorkspaceExecRequest struct {
	Workspace      string   `json:"workspace_id"`
	Command        []string `json:"command"`
	TimeoutSeconds int      `json:"timeout_seconds,omitempty"`
	Cwd            string   `json:"cwd,omitempty"`
	// Stdout and Stderr receive the output live as well (CLI).
	Stdout io.Writer `json:"-"`
	Stderr io.Writer `json:"-"`
}

// ExecResult is the outcome of a command in a workspace.
type ExecResult struct {
	WorkspaceID     string `json:"workspace_id"`
	Command         string `json:"command"`
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	DurationMs      int64  `json:"duration_ms"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	ExecutionMode   string `json:"execution_mode"`
}

// ExecWorkspace runs a command in /workspace (or Cwd under it). A command
// that fails is not an error: see ExitCode and TimedOut.
func (c *Client) ExecWorkspace(ctx context.Context, req WorkspaceExecRequest) (*ExecResult, error) {
	if len(req.Command) == 0 || req.Command[0] == "" {
		return nil, errs.New(errs.Invalid, "give the command after --", "empty command")
	}
	if req.TimeoutSeconds == 0 {
		req.TimeoutSeconds = DefaultExecTimeoutSec
	}
	if req.TimeoutSeconds < 1 || req.TimeoutSeconds > 24*3600 {
		return nil, errs.New(errs.Invalid, "use --timeout-seconds between 1 and 86400", "invalid timeout %d s", req.TimeoutSeconds)
	}
	cwd, err := workspacePath(req.Cwd)
	if err != nil {
		return nil, err
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	start := time.Now()
	stdout := &capturedOutput{limit: c.opts.OutputLimit, live: req.Stdout}
	stderr := &capturedOutput{limit: c.opts.OutputLimit, live: req.Stderr}
	timeout := time.Duration(req.TimeoutSeconds) * time.Second
	execCtx, cancel := context.WithTimeout(ctx, timeout+timeout/4+10*time.Second)
	defer cancel()
	er := agentproto.ExecRequest{Argv: req.Command, Cwd: cwd, TimeoutMillis: timeout.Milliseconds(), OutputLimit: c.opts.OutputLimit}
	if rec.Manifest.Image != nil {
		er.Env = rec.Manifest.Image.Env
	}
	exit, err := sess.Exec(execCtx, er, nil, stdout, stderr)
	res := &ExecResult{WorkspaceID: rec.ID, Command: shellJoin(req.Command), ExecutionMode: rec.ExecutionMode,
		Stdout: stdout.String(), Stderr: stderr.String()}
	if err != nil {
		var ae *agentproto.Error
		switch {
		case errors.As(err, &ae) && ae.Code == agentproto.CodeNotFound:
			return nil, errs.New(errs.NotFound, "check the command name and --cwd", "%s (workspace %s)", ae.Message, rec.ID)
		case execCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
			res.TimedOut, res.ExitCode = true, ExitCodeTimeout
			res.DurationMs = time.Since(start).Milliseconds()
			return res, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		return nil, wrapAgentErr(err, "running the command")
	}
	res.ExitCode, res.TimedOut, res.DurationMs = exit.Code, exit.TimedOut, exit.DurationMs
	if exit.TimedOut {
		res.ExitCode = ExitCodeTimeout
	}
	res.StdoutTruncated = stdout.truncated(exit.StdoutBytes)
	res.StderrTruncated = stderr.truncated(exit.StderrBytes)
	return res, nil
}

// workspacePath checks a path given for a workspace: relative paths are
// under /workspace; absolute ones must be.
func workspacePath(p string) (string, error) {
	if p == "" {
		return "/workspace", nil
	}
	if strings.ContainsRune(p, 0) || len(p) > 4096 {
		return "", errs.New(errs.Invalid, "", "invalid path")
	}
	if !path.IsAbs(p) {
		p = "/workspace/" + p
	}
	c := path.Clean(p)
	if c != "/workspace" && !strings.HasPrefix(c, "/workspace/") {
		return "", errs.New(errs.Invalid, "use a path under /workspace", "%s is outside /workspace", truncate(p, 200))
	}
	return c, nil
}

// SyncPushRequest copies host files into a workspace.
type SyncPushRequest struct {
	Workspace  string `json:"workspace_id"`
	SourcePath string `json:"source_path"`
	Dest       string `json:"dest,omitempty"`
}

// SyncPushResult says what was copied.
type SyncPushResult struct {
	WorkspaceID string `json:"workspace_id"`
	SourcePath  string `json:"source_path"`
	Dest        string `json:"dest"`
	Mode        string `json:"mode"`
	Files       int64  `json:"files"`
	Bytes       int64  `json:"bytes"`
}

// SyncPush copies a host directory or archive into /workspace (or Dest
// under it). It is not atomic: after a failure, reset recovers.
func (c *Client) SyncPush(ctx context.Context, req SyncPushRequest) (*SyncPushResult, error) {
	dest, err := workspacePath(req.Dest)
	if err != nil {
		return nil, err
	}
	src, err := seed.Open(ctx, req.SourcePath, seed.DefaultLimits)
	if err != nil {
		return nil, err
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	err = c.pushTar(ctx, sess, dest, false, func(w *teeWriter) error {
		_, err := src.WriteTar(ctx, w, seed.DefaultLimits)
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return &SyncPushResult{WorkspaceID: rec.ID, SourcePath: req.SourcePath, Dest: dest, Mode: src.Mode, Files: src.Stats.Files, Bytes: src.Stats.Bytes}, nil
}

// FileListRequest lists a directory of a workspace.
type FileListRequest struct {
	Workspace string `json:"workspace_id"`
	Path      string `json:"path,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
}

// FileEntry is one listed path.
type FileEntry = agentproto.FileEntry

// FileList is the answer of ListFiles.
type FileList struct {
	WorkspaceID string      `json:"workspace_id"`
	Path        string      `json:"path"`
	Entries     []FileEntry `json:"entries"`
	Truncated   bool        `json:"truncated"`
}

// ListFiles lists a directory (recursively when asked).
func (c *Client) ListFiles(ctx context.Context, req FileListRequest) (*FileList, error) {
	p, err := workspacePath(req.Path)
	if err != nil {
		return nil, err
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	var res agentproto.FileListResult
	if err := supervisor.Call(ctx, sess, agentproto.OpFileList, agentproto.FileListRequest{Path: p, Recursive: req.Recursive}, &res); err != nil {
		return nil, wrapAgentErr(err, "listing "+p)
	}
	return &FileList{WorkspaceID: rec.ID, Path: res.Path, Entries: res.Entries, Truncated: res.Truncated}, nil
}

// FileReadRequest reads a file of a workspace.
type FileReadRequest struct {
	Workspace string `json:"workspace_id"`
	Path      string `json:"path"`
	MaxBytes  int64  `json:"max_bytes,omitempty"`
}

// FileReadResult is a file's content. Content is the text when it is
// valid UTF-8; otherwise Encoding is "base64" and Content is its base64.
type FileReadResult struct {
	WorkspaceID string `json:"workspace_id"`
	Path        string `json:"path"`
	Content     string `json:"content"`
	Encoding    string `json:"encoding"`
	SizeBytes   int64  `json:"size_bytes"`
	Truncated   bool   `json:"truncated"`
}

// ReadFile reads up to MaxBytes (default 1 MiB) of a file. Symlinks are
// followed only inside /workspace.
func (c *Client) ReadFile(ctx context.Context, req FileReadRequest) (*FileReadResult, error) {
	p, err := workspacePath(req.Path)
	if err != nil {
		return nil, err
	}
	if req.MaxBytes == 0 {
		req.MaxBytes = DefaultFileReadBytes
	}
	if req.MaxBytes < 1 || req.MaxBytes > maxPatchedFileBytes {
		return nil, errs.New(errs.Invalid, fmt.Sprintf("use --max-bytes between 1 and %d", maxPatchedFileBytes), "invalid max bytes %d", req.MaxBytes)
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	data, res, err := readFile(ctx, sess, p, req.MaxBytes)
	if err != nil {
		return nil, err
	}
	out := &FileReadResult{WorkspaceID: rec.ID, Path: res.Path, SizeBytes: res.SizeBytes, Truncated: res.Truncated, Encoding: "utf-8"}
	if utf8.Valid(data) {
		out.Content = string(data)
	} else {
		out.Content, out.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return out, nil
}

// readFile reads a guest file through the agent; the data is bounded by
// limit whatever the agent sends.
func readFile(ctx context.Context, sess *agentproto.Session, p string, limit int64) ([]byte, *agentproto.FileReadResult, error) {
	st, err := sess.Open(ctx, agentproto.OpFileRead, agentproto.FileReadRequest{Path: p, MaxBytes: limit})
	if err != nil {
		return nil, nil, wrapAgentErr(err, "reading "+p)
	}
	defer st.Close()
	st.CloseSend()
	var buf bytes.Buffer
	var res agentproto.FileReadResult
	err = supervisor.RecvOutput(ctx, st, &res, func(b []byte) error {
		if int64(buf.Len()+len(b)) > limit {
			return errs.New(errs.Internal, "", "the guest sent more than the %d bytes asked for", limit)
		}
		buf.Write(b)
		return nil
	})
	if err != nil {
		return nil, nil, wrapAgentErr(err, "reading "+p)
	}
	return buf.Bytes(), &res, nil
}

// FileWriteRequest writes a text file in a workspace.
type FileWriteRequest struct {
	Workspace string `json:"workspace_id"`
	Path      string `json:"path"`
	Text      string `json:"text"`
}

// FileWriteResult says what was written.
type FileWriteResult struct {
	WorkspaceID  string `json:"workspace_id"`
	Path         string `json:"path"`
	BytesWritten int64  `json:"bytes_written"`
}

// WriteFile replaces (or creates, with its parents) a text file under
// /workspace, atomically.
func (c *Client) WriteFile(ctx context.Context, req FileWriteRequest) (*FileWriteResult, error) {
	p, err := workspacePath(req.Path)
	if err != nil {
		return nil, err
	}
	if p == "/workspace" {
		return nil, errs.New(errs.Invalid, "name a file under /workspace", "cannot write /workspace itself")
	}
	if !utf8.ValidString(req.Text) {
		return nil, errs.New(errs.Invalid, "write UTF-8 text; use sync push for binary files", "the text is not valid UTF-8")
	}
	if len(req.Text) > MaxFileWriteBytes {
		return nil, errs.New(errs.Invalid, "use sync push for large files", "the text is %d bytes, over the %d-byte limit", len(req.Text), MaxFileWriteBytes)
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	res, err := writeFile(ctx, sess, p, []byte(req.Text))
	if err != nil {
		return nil, err
	}
	return &FileWriteResult{WorkspaceID: rec.ID, Path: res.Path, BytesWritten: res.BytesWritten}, nil
}

func writeFile(ctx context.Context, sess *agentproto.Session, p string, data []byte) (*agentproto.FileWriteResult, error) {
	st, err := sess.Open(ctx, agentproto.OpFileWrite, agentproto.FileWriteRequest{Path: p, MaxBytes: int64(len(data))})
	if err != nil {
		return nil, wrapAgentErr(err, "writing "+p)
	}
	defer st.Close()
	if _, err := st.SendData(ctx, agentproto.ChannelStdin, data); err != nil {
		return nil, wrapAgentErr(err, "writing "+p)
	}
	st.CloseSend()
	var res agentproto.FileWriteResult
	if err := supervisor.RecvResult(ctx, st, &res); err != nil {
		return nil, wrapAgentErr(err, "writing "+p)
	}
	return &res, nil
}

// PatchApplyRequest applies a unified diff to a workspace.
type PatchApplyRequest struct {
	Workspace string `json:"workspace_id"`
	Patch     string `json:"patch"`
}

// PatchSummary counts what a patch changed.
type PatchSummary struct {
	Files        int `json:"files"`
	Created      int `json:"created"`
	Deleted      int `json:"deleted"`
	Hunks        int `json:"hunks"`
	AddedLines   int `json:"added_lines"`
	RemovedLines int `json:"removed_lines"`
}

// PatchApplyResult lists the changed files.
type PatchApplyResult struct {
	WorkspaceID string       `json:"workspace_id"`
	Changed     []string     `json:"changed"`
	Summary     PatchSummary `json:"summary"`
}

// ApplyPatch applies a unified diff. Every hunk of every file is checked
// before any file changes; a failing hunk names the file and line.
func (c *Client) ApplyPatch(ctx context.Context, req PatchApplyRequest) (*PatchApplyResult, error) {
	if len(req.Patch) > MaxPatchBytes {
		return nil, errs.New(errs.Invalid, "split the patch", "the patch is %d bytes, over the %d-byte limit", len(req.Patch), MaxPatchBytes)
	}
	files, err := patch.Parse([]byte(req.Patch))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "give a unified diff (as git diff or diff -u print); nothing was changed", "malformed patch")
	}
	if len(files) == 0 {
		return nil, errs.New(errs.Invalid, "give a unified diff (as git diff or diff -u print)", "the patch changes no file")
	}
	type planned struct {
		path   string
		data   []byte
		delete bool
	}
	var plan []planned
	sum := PatchSummary{}
	for _, fp := range files {
		p, err := workspacePath(fp.Path())
		if err != nil {
			return nil, err
		}
		plan = append(plan, planned{path: p})
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	for i, fp := range files {
		var old []byte
		data, _, err := readFile(ctx, sess, plan[i].path, maxPatchedFileBytes)
		switch {
		case err == nil:
			old = data
			if old == nil {
				old = []byte{}
			}
		case errs.KindOf(err) == errs.NotFound:
			old = nil
		default:
			return nil, err
		}
		out, err := patch.Apply(fp, old)
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "regenerate the patch against the workspace's current files (see workspace diff or file read); nothing was changed", "the patch does not apply")
		}
		plan[i].data = out
		plan[i].delete = fp.Op() == patch.Delete
		sum.Files++
		sum.Hunks += len(fp.Hunks)
		for _, h := range fp.Hunks {
			for _, l := range h.Lines {
				switch l.Kind {
				case '+':
					sum.AddedLines++
				case '-':
					sum.RemovedLines++
				}
			}
		}
		if fp.Op() == patch.Create {
			sum.Created++
		}
		if plan[i].delete {
			sum.Deleted++
		}
	}
	res := &PatchApplyResult{WorkspaceID: rec.ID, Changed: []string{}, Summary: sum}
	for _, pl := range plan {
		if pl.delete {
			if err := supervisor.Call(ctx, sess, agentproto.OpFileRemove, agentproto.PathRequest{Path: pl.path}, nil); err != nil {
				return nil, wrapAgentErr(err, "removing "+pl.path)
			}
		} else if _, err := writeFile(ctx, sess, pl.path, pl.data); err != nil {
			return nil, err
		}
		res.Changed = append(res.Changed, pl.path)
	}
	return res, nil
}

// DiffResult is a workspace's changes against its baseline.
type DiffResult struct {
	WorkspaceID    string                  `json:"workspace_id"`
	Changed        bool                    `json:"changed"`
	Summary        agentproto.DiffSummary  `json:"summary"`
	Changes        []agentproto.DiffChange `json:"changes"`
	Patch          string                  `json:"patch"`
	PatchTruncated bool                    `json:"patch_truncated"`
}

// DiffWorkspace compares /workspace with its create-time baseline.
func (c *Client) DiffWorkspace(ctx context.Context, ref string) (*DiffResult, error) {
	rec, sess, err := c.running(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	st, err := sess.Open(ctx, agentproto.OpDiff, agentproto.DiffRequest{})
	if err != nil {
		return nil, wrapAgentErr(err, "diffing")
	}
	defer st.Close()
	st.CloseSend()
	var patchText bytes.Buffer
	const maxPatch = 8 << 20
	var r agentproto.DiffResult
	err = supervisor.RecvOutput(ctx, st, &r, func(b []byte) error {
		if patchText.Len()+len(b) > maxPatch {
			return errs.New(errs.Internal, "", "the guest sent a patch over %d bytes", maxPatch)
		}
		patchText.Write(b)
		return nil
	})
	if err != nil {
		return nil, wrapAgentErr(err, "diffing")
	}
	if r.Changes == nil {
		r.Changes = []agentproto.DiffChange{}
	}
	return &DiffResult{WorkspaceID: rec.ID, Changed: r.Changed, Summary: r.Summary, Changes: r.Changes,
		Patch: patchText.String(), PatchTruncated: r.PatchTrunc}, nil
}

// ExportRequest copies a file or directory of a workspace to the host.
type ExportRequest struct {
	Workspace  string `json:"workspace_id"`
	Path       string `json:"path"`
	OutputPath string `json:"output_path"`
}

// ExportResult says what was exported.
type ExportResult struct {
	WorkspaceID  string `json:"workspace_id"`
	Path         string `json:"path"`
	OutputPath   string `json:"output_path"`
	ArtifactType string `json:"artifact_type"`
	Files        int64  `json:"files"`
	Bytes        int64  `json:"bytes"`
}

// ExportWorkspace copies a file or directory of /workspace to OutputPath,
// which must not exist. It is written beside the output and renamed into
// place, so a failure leaves nothing. Symlinks that point out of the
// exported tree are refused.
func (c *Client) ExportWorkspace(ctx context.Context, req ExportRequest) (*ExportResult, error) {
	p, err := workspacePath(req.Path)
	if err != nil {
		return nil, err
	}
	if req.OutputPath == "" {
		return nil, errs.New(errs.Invalid, "give --output HOST_PATH", "no output path")
	}
	out, err := filepath.Abs(req.OutputPath)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, errs.New(errs.Conflict, "choose an output path that does not exist", "%s exists (or is a symlink); export never overwrites", out)
	}
	parent := filepath.Dir(out)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return nil, errs.New(errs.Invalid, "create the parent directory first", "%s is not a directory", parent)
	}
	rec, sess, err := c.running(ctx, req.Workspace)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	// Whether the path is a file or a directory decides what the output
	// becomes; ask, rather than guess from the archive's shape.
	var probe agentproto.FileListResult
	if err := supervisor.Call(ctx, sess, agentproto.OpFileList, agentproto.FileListRequest{Path: p, MaxEntries: 1}, &probe); err != nil {
		return nil, wrapAgentErr(err, "exporting "+p)
	}
	isFile := len(probe.Entries) == 1 && probe.Entries[0].Path == probe.Path && probe.Entries[0].ArtifactType != "directory"
	tmp, err := os.MkdirTemp(parent, ".pyro-export-")
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "", "creating the export")
	}
	defer fsutil.RemoveTree(tmp)
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	st, err := sess.Open(ctx, agentproto.OpTarOut, agentproto.PathRequest{Path: p})
	if err != nil {
		return nil, wrapAgentErr(err, "exporting "+p)
	}
	defer st.Close()
	st.CloseSend()
	stats, err := tarx.Extract(ctx, root, st.DataReader(ctx, agentproto.ChannelStdout),
		tarx.Limits{MaxBytes: maxExportBytes, MaxFiles: maxExportFiles, ConfineSymlinks: true, StripSetID: true})
	if err != nil {
		var ae *agentproto.Error
		if errors.As(err, &ae) {
			return nil, wrapAgentErr(err, "exporting "+p)
		}
		return nil, errs.Wrap(errs.Invalid, err, "nothing was written", "exporting %s", p)
	}
	res := &ExportResult{WorkspaceID: rec.ID, Path: p, OutputPath: out, Files: stats.Files, Bytes: stats.Bytes}
	// A file export is one entry named after the file; a directory's
	// entries are relative to it.
	src := tmp
	res.ArtifactType = "directory"
	if isFile {
		src = filepath.Join(tmp, path.Base(p))
		res.ArtifactType = "file"
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() || stats.Files != 1 {
			return nil, errs.New(errs.Internal, "", "the guest sent something else than the file %s", p)
		}
	}
	if src == tmp {
		os.Chmod(tmp, 0o755)
	}
	if err := os.Rename(src, out); err != nil {
		return nil, errs.Wrap(errs.Conflict, err, "choose an output path that does not exist", "placing the export at %s", out)
	}
	return res, nil
}

// ResetRequest resets a workspace.
type ResetRequest struct {
	Workspace string `json:"workspace_id"`
	// Snapshot is the checkpoint to reset to; "" or "baseline" is the
	// create-time content.
	Snapshot string `json:"snapshot_name,omitempty"`
}

// ResetWorkspace replaces a workspace's VM by a fresh one whose /workspace
// is the baseline again. The id, name, labels and baseline stay; the
// command history is cleared.
func (c *Client) ResetWorkspace(ctx context.Context, req ResetRequest) (*Workspace, error) {
	if req.Snapshot != "" && req.Snapshot != "baseline" {
		return nil, errs.New(errs.NotFound, "reset to baseline; named snapshots come in a later release", "no snapshot %q", req.Snapshot)
	}
	id, err := c.resolve(req.Workspace)
	if err != nil {
		return nil, err
	}
	agent, err := c.agentBinary()
	if err != nil {
		return nil, err
	}
	if err := c.stopSupervisor(ctx, id, true, true); err != nil {
		return nil, err
	}
	st := c.store()
	rec, lock, err := c.lockedRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	c.opts.Progress.Phase("reset", "workspace_id", id)
	fail := func(err error) (*Workspace, error) {
		supervisor.KillRunning(st, id)
		rec.State, rec.LastError = store.StateFailed, "reset failed: "+err.Error()
		st.Write(id, rec)
		return nil, err
	}
	if err := makeDisk(ctx, st.Path(id, supervisor.DiskFile), rec.DiskBytes); err != nil {
		return fail(err)
	}
	if err := c.spawn(ctx, rec, agent); err != nil {
		return fail(err)
	}
	sess, err := c.dial(ctx, id)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	baseline, err := os.Open(st.Path(id, "baseline.tar"))
	if err != nil {
		return fail(errs.Wrap(errs.Internal, err, "delete and recreate the workspace", "the workspace's baseline is missing"))
	}
	defer baseline.Close()
	err = c.pushTar(ctx, sess, "/workspace", true, func(w *teeWriter) error {
		_, err := io.Copy(w, baseline)
		return err
	}, nil)
	if err != nil {
		return fail(err)
	}
	os.Remove(st.Path(id, supervisor.JournalFile))
	rec.State, rec.LastError = store.StateStarted, ""
	rec.CommandCount, rec.LastCommand = 0, nil
	rec.Generation++
	rec.LastActivity = time.Now().UTC()
	if err := st.Write(id, rec); err != nil {
		return nil, err
	}
	return workspacePayload(rec), nil
}

// WorkspaceLogs is a workspace's command history.
type WorkspaceLogs struct {
	WorkspaceID string                    `json:"workspace_id"`
	Entries     []supervisor.JournalEntry `json:"entries"`
	Count       int                       `json:"count"`
}

// LogsWorkspace returns the commands run in a workspace, oldest first.
func (c *Client) LogsWorkspace(ctx context.Context, ref string) (*WorkspaceLogs, error) {
	id, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	entries, err := supervisor.ReadJournal(c.store().Path(id, supervisor.JournalFile))
	if err != nil {
		return nil, err
	}
	return &WorkspaceLogs{WorkspaceID: id, Entries: entries, Count: len(entries)}, nil
}

// WorkspaceSummary reviews what happened in a workspace.
type WorkspaceSummary struct {
	Workspace    *Workspace              `json:"workspace"`
	Commands     []LastCommand           `json:"commands"`
	FailedCount  int                     `json:"failed_commands"`
	Changed      bool                    `json:"changed"`
	DiffSummary  agentproto.DiffSummary  `json:"diff_summary"`
	ChangedFiles []agentproto.DiffChange `json:"changed_files"`
	Services     []string                `json:"services"`
	Snapshots    []string                `json:"snapshots"`
}

// SummarizeWorkspace reviews a workspace: its commands, the files changed
// since the baseline, services and snapshots.
func (c *Client) SummarizeWorkspace(ctx context.Context, ref string) (*WorkspaceSummary, error) {
	ws, err := c.WorkspaceStatus(ctx, ref)
	if err != nil {
		return nil, err
	}
	logs, err := c.LogsWorkspace(ctx, ws.WorkspaceID)
	if err != nil {
		return nil, err
	}
	sum := &WorkspaceSummary{Workspace: ws, Commands: []LastCommand{}, ChangedFiles: []agentproto.DiffChange{}, Services: []string{}, Snapshots: []string{"baseline"}}
	for _, e := range logs.Entries {
		sum.Commands = append(sum.Commands, LastCommand{Command: e.Command, ExitCode: e.ExitCode, DurationMs: e.DurationMs, TimedOut: e.TimedOut, FinishedAt: e.FinishedAt})
		if e.ExitCode != 0 {
			sum.FailedCount++
		}
	}
	if ws.State == store.StateStarted {
		if d, err := c.DiffWorkspace(ctx, ws.WorkspaceID); err == nil {
			sum.Changed, sum.DiffSummary, sum.ChangedFiles = d.Changed, d.Summary, d.Changes
		}
	}
	return sum, nil
}
