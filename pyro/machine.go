package pyro

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pyro-sandbox/pyro/internal/accel"
	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/guest"
	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/vm"
	"github.com/pyro-sandbox/pyro/internal/vmm"
	"github.com/pyro-sandbox/pyro/internal/vmm/hostcompat"
	"github.com/pyro-sandbox/pyro/internal/vmm/qemu"
)

// bootTimeout bounds a boot to the agent's hello.
func bootTimeout(a vmm.Accelerator) time.Duration {
	if s := os.Getenv("PYRO_BOOT_TIMEOUT_SECONDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	if a == vmm.KVM {
		return 30 * time.Second
	}
	return 90 * time.Second
}

// accelerator decides KVM or TCG for booting m, probing KVM once per host
// boot, kernel and QEMU when it looks usable.
func (c *Client) accelerator(ctx context.Context, m *env.Manifest) (accel.Decision, error) {
	kvm := host.ProbeKVM()
	// A fact of the host, shared by every state directory using this cache.
	store := accel.Store{Path: filepath.Join(c.cache.Dir, "accel-probe.json")}
	key := host.BootID() + "/" + m.Kernel.Digest + "/" + qemuIdentity()
	d, err := accel.Choose(os.Getenv(accel.EnvOverride), kvm, store.Load(key))
	if err != nil {
		return d, errs.Wrap(errs.Invalid, err, "unset "+accel.EnvOverride+" or fix /dev/kvm", "choosing the accelerator")
	}
	if !d.NeedProbe {
		return d, nil
	}
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	if p := store.Load(key); p != nil {
		return accel.Choose("", kvm, p)
	}
	c.opts.Progress.Phase("probe", "accelerator", "kvm")
	p := c.probeKVM(ctx, m)
	p.Key = key
	if ctx.Err() != nil {
		return d, ctx.Err()
	}
	store.Save(p)
	return accel.Choose("", kvm, &p)
}

func qemuIdentity() string {
	p, err := lookPath(qemu.Binary)
	if err != nil {
		return "none"
	}
	fi, err := os.Stat(p)
	if err != nil {
		return p
	}
	return p + "@" + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
}

// probeKVM boots the guest kernel under KVM to its init, which powers off at
// once, and says whether that finished within accel.ProbeDeadline.
func (c *Client) probeKVM(ctx context.Context, m *env.Manifest) accel.Probe {
	agent, err := c.agentBinary()
	if err != nil {
		return accel.Probe{Detail: err.Error()}
	}
	kernelPath, initrd, err := c.cache.BootFiles(m, agent)
	if err != nil {
		return accel.Probe{Detail: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, accel.ProbeDeadline)
	defer cancel()
	start := time.Now()
	mach, err := c.backend.Start(ctx, vmm.Spec{
		ID: "kvm-probe", Kernel: kernelPath, Initrd: initrd, VCPUs: 1, MemMiB: 256, Accel: vmm.KVM,
		Cmdline: []string{guest.ParamProbe + "=1"},
	})
	if err != nil {
		return accel.Probe{Detail: err.Error()}
	}
	select {
	case <-mach.Done():
		if err := mach.Wait(); err != nil {
			return accel.Probe{Detail: "QEMU: " + err.Error() + " " + mach.Diagnostics()}
		}
		return accel.Probe{OK: true, Millis: time.Since(start).Milliseconds()}
	case <-ctx.Done():
		mach.Kill()
		return accel.Probe{Millis: time.Since(start).Milliseconds()}
	}
}

// templatesEnabled says whether one-shot machines are restored from
// templates (the default) or booted cold (PYRO_TEMPLATES=0), which the
// benchmark measures and a user chasing a problem may want.
func templatesEnabled() bool {
	return os.Getenv("PYRO_TEMPLATES") != "0"
}

// machine is a started machine and how commands run in it.
type machine struct {
	*vm.VM
	mode string // execution_mode
}

// startMachine boots m in a VM, or, when this host cannot boot VMs and the
// caller allowed it, starts the agent on the host in namespaces. It never
// falls back silently.
func (c *Client) startMachine(ctx context.Context, m *env.Manifest, allowHostCompat bool, vcpus, memMiB int, id string, remakeTemplate bool) (*machine, error) {
	agent, err := c.agentBinary()
	if err != nil {
		return nil, err
	}
	o := vm.Options{
		ID:       id,
		Manifest: m,
		Cache:    c.cache,
		Agent:    agent,
		VCPUs:    vcpus,
		MemMiB:   memMiB,
		TSCKHz:   host.TSCKHz(),
	}
	mode := ModeGuestSerial
	if err := c.checkRuntime(); err != nil {
		if !allowHostCompat {
			return nil, err
		}
		o.Backend = &hostcompat.Backend{Agent: c.cache.HostAgent(agent, selfPath()), RootfsCache: filepath.Join(c.cache.Dir, "hostcompat")}
		o.BootTimeout = 60 * time.Second
		mode = ModeHostCompat
	} else {
		d, err := c.accelerator(ctx, m)
		if err != nil {
			return nil, err
		}
		o.Backend, o.Accel, o.BootTimeout = c.backend, d.Accel, bootTimeout(d.Accel)
		o.Templates = templatesEnabled()
		o.RemakeTemplate = remakeTemplate
		o.Phase = c.opts.Progress.Phase
	}
	kv := []string{"vm_id", id, "backend", o.Backend.Name()}
	if o.Accel != "" {
		kv = append(kv, "accelerator", string(o.Accel))
	}
	c.opts.Progress.Phase("start", kv...)
	c.cache.Touch(m.Name)
	v, err := vm.Boot(ctx, o)
	if err != nil {
		return nil, err
	}
	return &machine{VM: v, mode: mode}, nil
}
