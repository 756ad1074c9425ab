package pyro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/vm"
)

// Defaults of RunRequest.
const (
	DefaultVCPUCount      = 1
	DefaultMemMiB         = 1024
	DefaultTimeoutSeconds = 30
	DefaultTTLSeconds     = 600
)

// Bounds of machine sizes.
const (
	MinMemMiB = 128
	MaxMemMiB = 256 << 10
	MaxVCPUs  = 64
)

// RunRequest is a one-shot command: create a VM, run the command, delete
// the VM. Zero sizes and timeouts take the defaults.
type RunRequest struct {
	Environment     string   `json:"environment"`
	Command         []string `json:"command"`
	VCPUCount       int      `json:"vcpu_count,omitempty"`
	MemMiB          int      `json:"mem_mib,omitempty"`
	TimeoutSeconds  int      `json:"timeout_seconds,omitempty"`
	TTLSeconds      int      `json:"ttl_seconds,omitempty"`
	Network         bool     `json:"network,omitempty"`
	AllowHostCompat bool     `json:"allow_host_compat,omitempty"`
	// Stdout and Stderr, when set, receive the command's output live (up
	// to the output limit) as well as the result.
	Stdout io.Writer `json:"-"`
	Stderr io.Writer `json:"-"`
	// remakeTemplate: Prepare with Force.
	remakeTemplate bool
}

// Cleanup says what became of a one-shot VM.
type Cleanup struct {
	Deleted bool   `json:"deleted"`
	Reason  string `json:"reason"`
	VMID    string `json:"vm_id"`
}

// RunTimings are the phases of a run, in milliseconds.
type RunTimings struct {
	PrepareMs  int64 `json:"prepare_ms"`
	VMMStartMs int64 `json:"vmm_start_ms"`
	BootMs     int64 `json:"boot_ms"`
	ExecMs     int64 `json:"exec_ms"`
	// CommandMs is how long the command's process ran, as the guest saw it
	// (part of ExecMs).
	CommandMs  int64 `json:"command_ms"`
	TeardownMs int64 `json:"teardown_ms"`
	// BootSource is "cold" (the kernel booted for this run) or "template"
	// (the machine was restored from a snapshot of one booted before);
	// empty on the host.
	BootSource string `json:"boot_source,omitempty"`
	// Guest is the guest's uptime at each step of its init, when its
	// kernel booted for this run.
	Guest []GuestBootStep `json:"guest_boot,omitempty"`
}

// GuestBootStep is a step of the guest's init and its uptime when done.
type GuestBootStep = agentproto.BootStep

// RunResult is the outcome of a one-shot command.
type RunResult struct {
	Environment     string     `json:"environment"`
	Command         string     `json:"command"`
	ExecutionMode   string     `json:"execution_mode"`
	Accelerator     string     `json:"accelerator,omitempty"`
	ExitCode        int        `json:"exit_code"`
	Stdout          string     `json:"stdout"`
	Stderr          string     `json:"stderr"`
	StdoutTruncated bool       `json:"stdout_truncated"`
	StderrTruncated bool       `json:"stderr_truncated"`
	DurationMs      int64      `json:"duration_ms"`
	TimedOut        bool       `json:"timed_out"`
	Cleanup         Cleanup    `json:"cleanup"`
	VMID            string     `json:"vm_id"`
	Timings         RunTimings `json:"timings"`
}

// Execution modes.
const (
	ModeGuestVsock  = "guest_vsock"
	ModeGuestSerial = "guest_serial"
	ModeHostCompat  = store.ModeHostCompat
)

// ExitCodeTimeout is the exit code of a command that ran out of time.
const ExitCodeTimeout = 124

func (r *RunRequest) normalize() error {
	if r.Environment == "" {
		r.Environment = env.DefaultName
	}
	if len(r.Command) == 0 || r.Command[0] == "" {
		return errs.New(errs.Invalid, "give the command after --, for example: pyro run debian:12 -- git --version", "empty command")
	}
	if r.VCPUCount == 0 {
		r.VCPUCount = DefaultVCPUCount
	}
	if r.MemMiB == 0 {
		r.MemMiB = DefaultMemMiB
	}
	if r.TimeoutSeconds == 0 {
		r.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if r.TTLSeconds == 0 {
		r.TTLSeconds = DefaultTTLSeconds
	}
	return r.Validate()
}

// Validate checks the request as it is, without defaults: a zero size is
// refused here (Run treats zero as "the default").
func (r *RunRequest) Validate() error {
	return validateSize(r.VCPUCount, r.MemMiB, r.TimeoutSeconds, r.TTLSeconds)
}

func validateSize(vcpus, memMiB, timeout, ttl int) error {
	if maxV := min(MaxVCPUs, runtime.NumCPU()); vcpus < 1 || vcpus > maxV {
		return errs.New(errs.Invalid, fmt.Sprintf("use --vcpu-count between 1 and %d (this host has %d CPUs)", maxV, runtime.NumCPU()),
			"invalid vCPU count %d", vcpus)
	}
	if memMiB < MinMemMiB || memMiB > MaxMemMiB {
		return errs.New(errs.Invalid, fmt.Sprintf("use --mem-mib between %d and %d", MinMemMiB, MaxMemMiB), "invalid memory size %d MiB", memMiB)
	}
	if timeout < 1 || timeout > 24*3600 {
		return errs.New(errs.Invalid, "use --timeout-seconds between 1 and 86400", "invalid timeout %d s", timeout)
	}
	if ttl < 1 || ttl > 7*24*3600 {
		return errs.New(errs.Invalid, "use --ttl-seconds between 1 and 604800", "invalid TTL %d s", ttl)
	}
	return nil
}

// Run runs one command in a fresh VM and deletes the VM. A command that
// runs and fails is not an error: its exit code is in the result. Errors
// are pyro's own failures (with ErrTimeout when the command's time ran out
// is NOT one of them: see TimedOut).
func (c *Client) Run(ctx context.Context, req RunRequest) (*RunResult, error) {
	start := time.Now()
	if err := req.normalize(); err != nil {
		return nil, err
	}
	if req.Network {
		return nil, errs.New(errs.Unavailable, "run without --network; guest networking comes in a later release",
			"guest networking is not supported yet")
	}
	m, err := c.installed(ctx, req.Environment)
	if err != nil {
		return nil, err
	}
	res := &RunResult{Environment: m.Name, Command: shellJoin(req.Command)}
	// The TTL bounds the VM's whole life, whatever happens.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.TTLSeconds)*time.Second)
	defer cancel()

	rep := c.opts.Progress
	rep.Phase("create", "environment", req.Environment)
	id := vm.NewID()
	res.VMID = id
	v, err := c.startMachine(ctx, m, req.AllowHostCompat, req.VCPUCount, req.MemMiB, id, req.remakeTemplate)
	if err != nil {
		return nil, err
	}
	res.ExecutionMode = v.mode
	res.Accelerator = string(v.Accel)
	res.Timings.PrepareMs = v.Timings.Prepare.Milliseconds()
	res.Timings.VMMStartMs = v.Timings.VMMStart.Milliseconds()
	res.Timings.BootMs = v.Timings.Boot.Milliseconds()
	switch {
	case v.Restored:
		res.Timings.BootSource = "template"
	case v.mode != ModeHostCompat:
		res.Timings.BootSource = "cold"
		res.Timings.Guest = append(v.Hello.Boot, GuestBootStep{Step: "ready", UptimeMs: v.Hello.UptimeMillis})
	}

	rep.Phase("execute", "vm_id", id)
	execStart := time.Now()
	execErr := c.execOneShot(ctx, v.Session, m, req, res)
	res.Timings.ExecMs = time.Since(execStart).Milliseconds()

	t := time.Now()
	v.Kill()
	res.Timings.TeardownMs = time.Since(t).Milliseconds()
	res.Cleanup = Cleanup{Deleted: true, Reason: "post_exec_cleanup", VMID: id}
	res.DurationMs = time.Since(start).Milliseconds()
	if execErr != nil {
		if ctx.Err() == context.DeadlineExceeded && !errors.Is(execErr, context.Canceled) {
			return nil, errs.New(errs.Timeout, "raise --ttl-seconds", "the VM's TTL of %d s ran out; it was deleted", req.TTLSeconds)
		}
		return nil, execErr
	}
	return res, nil
}

// execOneShot runs req's command on the session and fills res.
func (c *Client) execOneShot(ctx context.Context, sess *agentproto.Session, m *env.Manifest, req RunRequest, res *RunResult) error {
	stdout := &capturedOutput{limit: c.opts.OutputLimit, live: req.Stdout}
	stderr := &capturedOutput{limit: c.opts.OutputLimit, live: req.Stderr}
	timeout := time.Duration(req.TimeoutSeconds) * time.Second
	// The agent enforces the timeout; the host waits a little longer in
	// case the guest cannot.
	execCtx, cancel := context.WithTimeout(ctx, timeout+timeout/4+10*time.Second)
	defer cancel()
	// An OCI image's Env applies to its commands, and a one-shot run
	// starts in its WorkingDir.
	er := agentproto.ExecRequest{Argv: req.Command, Cwd: "/workspace", TimeoutMillis: timeout.Milliseconds(), OutputLimit: c.opts.OutputLimit}
	if m.Image != nil {
		er.Env = m.Image.Env
		if m.Image.WorkingDir != "" {
			er.Cwd = m.Image.WorkingDir
		}
	}
	exit, err := sess.Exec(execCtx, er, nil, stdout, stderr)
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	if err != nil {
		var perr *agentproto.Error
		switch {
		case errors.As(err, &perr) && perr.Code == agentproto.CodeNotFound:
			return errs.New(errs.NotFound, fmt.Sprintf("check the command name, or use an environment that has it (see 'pyro env inspect %s')", req.Environment),
				"%s (environment %s)", perr.Message, req.Environment)
		case errors.As(err, &perr):
			return errs.New(errs.Invalid, "", "the guest refused the command: %s", perr.Message)
		case execCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
			res.TimedOut = true
			res.ExitCode = ExitCodeTimeout
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		return errs.Wrap(errs.Internal, err, "run 'pyro doctor'", "running the command in the guest")
	}
	res.ExitCode = exit.Code
	res.Timings.CommandMs = exit.DurationMs
	res.TimedOut = exit.TimedOut
	if exit.TimedOut {
		res.ExitCode = ExitCodeTimeout
	}
	res.StdoutTruncated = stdout.truncated(exit.StdoutBytes)
	res.StderrTruncated = stderr.truncated(exit.StderrBytes)
	return nil
}

// installed returns the manifest of an installed environment, with errors
// that say what to do. An OCI image reference is pulled when missing (as
// docker run does); a catalog environment must be pulled first.
func (c *Client) installed(ctx context.Context, name string) (*env.Manifest, error) {
	name, image, err := env.CanonicalName(name)
	if err != nil {
		return nil, err
	}
	if image {
		if m, err := c.cache.Installed(name); err == nil {
			return m, nil
		}
		if _, err := c.Pull(ctx, PullRequest{Environment: name}); err != nil {
			return nil, err
		}
		return c.cache.Installed(name)
	}
	if _, err := env.Lookup(name); err != nil {
		return nil, err
	}
	return c.cache.Installed(name)
}

// checkRuntime says whether this host can boot VMs at all.
func (c *Client) checkRuntime() error {
	if _, err := lookPath("qemu-system-x86_64"); err != nil {
		return errs.New(errs.Unavailable, "install QEMU (on Debian: apt-get install qemu-system-x86), or pass --allow-host-compat to run on the host",
			"qemu-system-x86_64 not found: pyro cannot boot VMs on this host")
	}
	return nil
}
