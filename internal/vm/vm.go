// Package vm boots an environment into a running machine whose agent is
// ready: boot files, VMM start, the agent's hello, and teardown on every
// failure path. One-shot runs and workspace supervisors both stand on it.
package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/guest"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// Options says what to boot and how.
type Options struct {
	ID       string // default: a new random id
	Manifest *env.Manifest
	Cache    *env.Cache
	// Agent is the static pyro binary that becomes the guest's init.
	Agent   string
	Backend vmm.Backend
	Accel   vmm.Accelerator
	VCPUs   int
	MemMiB  int
	// BootTimeout bounds the time from VMM start to the agent's hello.
	BootTimeout time.Duration
	// TSCKHz is the host's TSC rate, passed to the guest under TCG.
	TSCKHz int64
	// ExtraDisks follow the root filesystem (/dev/vdb, ...).
	ExtraDisks []vmm.Disk
	// Upper is the writable layer over the root filesystem: "tmpfs" (the
	// default; gone at power-off) or a guest block device.
	Upper string
	// Templates: restore the machine from a template when the backend
	// can, making the template on first use (see template.go). Only for
	// machines whose disks hold nothing of their own: the template's
	// memory holds the state of every disk as it was when it was made.
	Templates bool
	// RemakeTemplate discards the machine's template, and any memory of a
	// failure to make one, before booting: pyro prepare --force.
	RemakeTemplate bool
	// Phase, when set, hears of long steps the caller did not start
	// itself (making a template).
	Phase func(phase string, kv ...string)
}

// Timings are the phases of a boot.
type Timings struct {
	Prepare  time.Duration // boot files
	VMMStart time.Duration // until the VMM process runs
	Boot     time.Duration // VMM start until the agent's hello
}

// VM is a booted machine with a ready agent.
type VM struct {
	ID      string
	Accel   vmm.Accelerator
	Machine vmm.Machine
	Session *agentproto.Session
	Hello   agentproto.Hello
	Console *vmm.Ring
	Timings Timings
	// Restored: the machine came from a template, not a boot; Hello is
	// then the template's.
	Restored bool
}

// NewID returns a fresh machine id.
func NewID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Boot starts a machine and waits until its agent is ready. On any error
// the machine is gone when Boot returns.
func Boot(ctx context.Context, o Options) (*VM, error) {
	if o.ID == "" {
		o.ID = NewID()
	}
	v := &VM{ID: o.ID, Accel: o.Accel, Console: &vmm.Ring{Size: 32 << 10}}
	t0 := time.Now()
	kernelPath, initrd, err := o.Cache.BootFiles(o.Manifest, o.Agent)
	if err != nil {
		return nil, err
	}
	v.Timings.Prepare = time.Since(t0)
	upper := o.Upper
	if upper == "" {
		upper = "tmpfs"
	}
	spec := vmm.Spec{
		ID:     o.ID,
		Kernel: kernelPath,
		Initrd: initrd,
		Cmdline: []string{
			guest.ParamRoot + "=/dev/vda",
			guest.ParamUpper + "=" + upper,
		},
		VCPUs:   o.VCPUs,
		MemMiB:  o.MemMiB,
		Disks:   append([]vmm.Disk{{Path: o.Cache.BlobPath(o.Manifest.Rootfs.Digest), ReadOnly: true}}, o.ExtraDisks...),
		Accel:   o.Accel,
		Console: v.Console,
	}
	if o.Accel == vmm.TCG && o.TSCKHz > 0 {
		spec.TSCKHz = o.TSCKHz
		if hz := o.Manifest.Kernel.HZ; hz > 0 {
			spec.LoopsPerJiffy = o.TSCKHz * 1000 / int64(hz)
		}
	}
	if tb, ok := o.Backend.(vmm.Templater); ok && o.Templates && len(o.ExtraDisks) == 0 {
		err := bootFromTemplate(ctx, o, tb, spec, v)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return nil, errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "", "booting the VM was interrupted")
		}
		// Any other failure: the cold boot below is the fallback, and
		// says what is wrong if the machine cannot boot at all.
	}
	t1 := time.Now()
	m, err := o.Backend.Start(ctx, spec)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "run 'pyro doctor'", "starting the VM")
	}
	v.Machine = m
	v.Timings.VMMStart = time.Since(t1)

	bootCtx, cancel := context.WithTimeout(ctx, o.BootTimeout)
	defer cancel()
	sess, hello, err := agentproto.Accept(bootCtx, m.Agent(), agentproto.Config{})
	if err != nil {
		m.Kill()
		return nil, v.bootError(ctx, bootCtx, o, err)
	}
	v.Session = sess
	v.Hello = hello
	v.Timings.Boot = time.Since(t1)
	return v, nil
}

func (v *VM) bootError(ctx, bootCtx context.Context, o Options, err error) error {
	console := lastLines(v.Console.String(), 8)
	diag := lastLines(v.Machine.Diagnostics(), 4)
	detail := ""
	if diag != "" {
		detail += "\nQEMU said: " + diag
	}
	if console != "" {
		detail += "\nguest console: " + console
	}
	switch {
	case ctx.Err() != nil:
		return errs.Wrap(errs.KindOf(ctx.Err()), ctx.Err(), "", "booting the VM was interrupted")
	case bootCtx.Err() != nil:
		return errs.New(errs.Timeout, "run 'pyro doctor'; on a slow host raise the boot timeout (PYRO_BOOT_TIMEOUT_SECONDS)",
			"the guest agent did not become ready within %s (accelerator %s)%s", o.BootTimeout, o.Accel, detail)
	case errors.Is(err, agentproto.ErrProtocol):
		return errs.Wrap(errs.Internal, err, "run 'pyro env pull' again; if it persists, report a bug", "the guest agent broke the protocol%s", detail)
	}
	select {
	case <-v.Machine.Done():
		return errs.New(errs.Unavailable, "run 'pyro doctor'", "the VM stopped during boot (%v)%s", v.Machine.Wait(), detail)
	default:
	}
	return errs.Wrap(errs.Unavailable, err, "run 'pyro doctor'", "the guest agent did not become ready%s", detail)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}

// Kill ends the machine at once. For a machine whose disks hold nothing
// worth keeping (a one-shot run) this is the whole teardown.
func (v *VM) Kill() error {
	if v.Session != nil {
		v.Session.Close()
	}
	return v.Machine.Kill()
}

// Shutdown asks the agent to flush and power off, and kills the machine if
// it has not stopped when ctx ends.
func (v *VM) Shutdown(ctx context.Context) error {
	if v.Session != nil {
		if st, err := v.Session.Open(ctx, agentproto.OpShutdown, struct{}{}); err == nil {
			st.Close()
		}
	}
	select {
	case <-v.Machine.Done():
		return nil
	case <-ctx.Done():
		return v.Kill()
	}
}

// String names the machine for messages.
func (v *VM) String() string { return fmt.Sprintf("vm %s (%s)", v.ID, v.Accel) }
