package pyro

import (
	"context"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
)

// throwawayTTL bounds the life of prepare's throwaway workspace, in
// seconds of inactivity.
const throwawayTTL = 120

// PrepareRequest asks to warm an environment.
type PrepareRequest struct {
	// Environment defaults to debian:12.
	Environment string `json:"environment,omitempty"`
	// Force makes the run template again even when one is ready.
	Force   bool `json:"force,omitempty"`
	Network bool `json:"network,omitempty"`
}

// Template states in PrepareResult.
const (
	TemplateReady       = "ready"       // runs of the default size restore it
	TemplateOff         = "off"         // PYRO_TEMPLATES=0: every run boots cold
	TemplateUnavailable = "unavailable" // this host's runs boot cold (see pyro doctor)
)

// PrepareResult says what Prepare made ready and how long its proof took.
type PrepareResult struct {
	Environment   string `json:"environment"`
	Pulled        bool   `json:"pulled"` // it was not installed, and now is
	Accelerator   string `json:"accelerator,omitempty"`
	ExecutionMode string `json:"execution_mode"`
	// Template is the state of the run template of the default size.
	Template string `json:"template"`
	// RunMs is a run of `true` at the default size, once the template is
	// ready: what the next run costs.
	RunMs      int64          `json:"run_ms"`
	Workspace  PrepareTimings `json:"workspace"`
	DurationMs int64          `json:"duration_ms"`
}

// PrepareTimings are the steps of the throwaway workspace that proves the
// environment, in milliseconds.
type PrepareTimings struct {
	CreateMs int64 `json:"create_ms"`
	ExecMs   int64 `json:"exec_ms"`
	ResetMs  int64 `json:"reset_ms"`
	DeleteMs int64 `json:"delete_ms"`
}

// Prepare warms an environment so that the next run or workspace is fast:
// it pulls the environment if it is not installed, makes the run template
// of the default size (again, with Force), and proves the whole path with
// one throwaway workspace: create, exec, reset, delete.
func (c *Client) Prepare(ctx context.Context, req PrepareRequest) (*PrepareResult, error) {
	start := time.Now()
	if req.Environment == "" {
		req.Environment = env.DefaultName
	}
	if req.Network {
		return nil, errs.New(errs.Unavailable, "prepare without --network; guest networking comes in a later release",
			"guest networking is not supported yet")
	}
	name, _, err := env.CanonicalName(req.Environment)
	if err != nil {
		return nil, err
	}
	res := &PrepareResult{Environment: name}
	if _, err := c.cache.Installed(name); err != nil {
		if _, err := c.Pull(ctx, PullRequest{Environment: name}); err != nil {
			return nil, err
		}
		res.Pulled = true
	}
	rep := c.opts.Progress

	// The first run makes the template (or remakes it); a second one
	// measures what runs cost from now on.
	rep.Phase("template", "environment", name)
	run := func(remake bool) (*RunResult, error) {
		r, err := c.Run(ctx, RunRequest{Environment: name, Command: []string{"true"}, remakeTemplate: remake})
		if err == nil && (r.ExitCode != 0 || r.TimedOut) {
			err = errs.New(errs.Internal, "run 'pyro doctor'", "the proof command `true` exited %d in %s", r.ExitCode, name)
		}
		return r, err
	}
	first, err := run(req.Force)
	if err != nil {
		return nil, err
	}
	res.Accelerator, res.ExecutionMode = first.Accelerator, first.ExecutionMode
	second, err := run(false)
	if err != nil {
		return nil, err
	}
	if first.Timings.BootSource != "template" && second.Timings.BootSource == "template" {
		// The second run made the template (the first booted cold while
		// another pyro held it, or timed out making it): measure again.
		if second, err = run(false); err != nil {
			return nil, err
		}
	}
	res.RunMs = second.DurationMs
	switch {
	case second.Timings.BootSource == "template":
		res.Template = TemplateReady
	case res.ExecutionMode == ModeGuestSerial && !templatesEnabled():
		res.Template = TemplateOff
	default:
		res.Template = TemplateUnavailable
	}

	// The proof: a throwaway workspace through every step of its life.
	rep.Phase("prove", "environment", name)
	t := time.Now()
	// A short TTL: should pyro die before it deletes the workspace (a
	// closed terminal, kill -9), its supervisor soon deletes it.
	ws, err := c.CreateWorkspace(ctx, WorkspaceCreateRequest{Environment: name, TTLSeconds: throwawayTTL,
		Labels: map[string]string{"pyro.prepare": "throwaway"}})
	if err != nil {
		return nil, err
	}
	res.Workspace.CreateMs = time.Since(t).Milliseconds()
	// Whatever fails from here, the throwaway workspace goes.
	deleted := false
	defer func() {
		if deleted {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := c.DeleteWorkspace(dctx, DeleteRequest{Workspace: ws.WorkspaceID, Force: true}); err != nil {
			rep.Phase("cleanup", "workspace_id", ws.WorkspaceID, "error", err.Error(), "detail", "its TTL deletes it")
		}
	}()
	t = time.Now()
	ex, err := c.ExecWorkspace(ctx, WorkspaceExecRequest{Workspace: ws.WorkspaceID, Command: []string{"true"}})
	if err != nil {
		return nil, err
	}
	if ex.ExitCode != 0 {
		return nil, errs.New(errs.Internal, "run 'pyro doctor'", "the proof command `true` exited %d in a %s workspace", ex.ExitCode, name)
	}
	res.Workspace.ExecMs = time.Since(t).Milliseconds()
	t = time.Now()
	if _, err := c.ResetWorkspace(ctx, ResetRequest{Workspace: ws.WorkspaceID}); err != nil {
		return nil, err
	}
	res.Workspace.ResetMs = time.Since(t).Milliseconds()
	t = time.Now()
	if _, err := c.DeleteWorkspace(ctx, DeleteRequest{Workspace: ws.WorkspaceID}); err != nil {
		return nil, err
	}
	deleted = true
	res.Workspace.DeleteMs = time.Since(t).Milliseconds()
	res.DurationMs = time.Since(start).Milliseconds()
	return res, nil
}
