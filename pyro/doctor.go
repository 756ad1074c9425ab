package pyro

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/accel"
	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/vm"
	"github.com/pyro-sandbox/pyro/internal/vmm/qemu"
)

// DoctorRequest asks for a host report, optionally about one environment.
type DoctorRequest struct {
	Environment string `json:"environment,omitempty"`
}

// Check is one line of the doctor's report.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // PASS, WARN or FAIL
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Capabilities say what this host can do.
type Capabilities struct {
	VMBoot       bool `json:"vm_boot"`
	GuestExec    bool `json:"guest_exec"`
	GuestNetwork bool `json:"guest_network"`
}

// EnvironmentState says whether an environment is ready.
type EnvironmentState struct {
	Name  string `json:"name"`
	State string `json:"state"` // warm, cold or stale
}

// DoctorReport is the host diagnosis.
type DoctorReport struct {
	Platform          string            `json:"platform"`
	Runtime           string            `json:"runtime"` // PASS or FAIL
	KVM               host.KVM          `json:"kvm"`
	Accelerator       string            `json:"accelerator"`
	AcceleratorReason string            `json:"accelerator_reason"`
	EnvironmentCache  string            `json:"environment_cache"`
	CatalogVersion    string            `json:"catalog_version"`
	Capabilities      Capabilities      `json:"capabilities"`
	Networking        string            `json:"networking"`
	Environment       *EnvironmentState `json:"environment,omitempty"`
	Checks            []Check           `json:"checks"`
}

// Doctor diagnoses the host. It boots no VM, except the one-time KVM probe
// when KVM looks usable and an environment is installed.
func (c *Client) Doctor(ctx context.Context, req DoctorRequest) (*DoctorReport, error) {
	r := &DoctorReport{
		Platform:         host.Platform(),
		KVM:              host.ProbeKVM(),
		EnvironmentCache: c.cache.Dir,
		CatalogVersion:   env.CatalogVersion,
		Networking:       "not supported yet (guests have no network device)",
	}
	add := func(name, status, detail, fix string) {
		r.Checks = append(r.Checks, Check{Name: name, Status: status, Detail: detail, Fix: fix})
	}
	if r.Platform != "linux-x86_64" {
		add("platform", "FAIL", r.Platform+" is not supported", "run pyro on Linux x86_64")
	} else {
		add("platform", "PASS", r.Platform, "")
	}

	qemuOK := false
	if t, err := host.FindTool(qemu.Binary, "--version"); err != nil {
		add("qemu", "FAIL", err.Error(), "install QEMU: apt-get install qemu-system-x86")
	} else if out, err := exec.Command(t.Path, "-machine", "help").Output(); err != nil || !strings.Contains(string(out), "microvm") {
		add("qemu", "FAIL", t.Version+" has no microvm machine type", "install QEMU 6.0 or newer with microvm: apt-get install qemu-system-x86")
	} else {
		qemuOK = true
		add("qemu", "PASS", t.Version, "")
	}

	switch {
	case r.KVM.Usable() && r.KVM.Nested != "":
		add("kvm", "WARN", fmt.Sprintf("/dev/kvm works but is a nested %s hypervisor; it is used only if a probe boot is fast", r.KVM.Nested), "")
	case r.KVM.Usable():
		add("kvm", "PASS", "/dev/kvm is usable", "")
	case r.KVM.Exists:
		add("kvm", "WARN", "/dev/kvm is not usable ("+r.KVM.Error+"); VMs run under TCG, much slower",
			"add your user to the kvm group (usermod -aG kvm $USER) and log in again")
	default:
		add("kvm", "WARN", "/dev/kvm does not exist; VMs run under TCG, much slower",
			"enable virtualization in the firmware and load kvm_intel or kvm_amd")
	}

	installed, _ := c.cache.List()
	var probeEnv *env.Manifest
	if len(installed) > 0 {
		probeEnv = installed[0]
	}
	if probeEnv != nil && qemuOK {
		d, err := c.accelerator(ctx, probeEnv)
		if err != nil {
			add("accelerator", "FAIL", err.Error(), "unset "+accel.EnvOverride)
		} else {
			r.Accelerator, r.AcceleratorReason = string(d.Accel), d.Reason
		}
	} else {
		d, err := accel.Choose(os.Getenv(accel.EnvOverride), r.KVM, nil)
		if err != nil {
			add("accelerator", "FAIL", err.Error(), "unset "+accel.EnvOverride)
		}
		r.Accelerator, r.AcceleratorReason = string(d.Accel), d.Reason
		if d.NeedProbe {
			r.AcceleratorReason = "KVM is probed with the first installed environment"
		}
	}
	if tsc := host.TSCKHz(); tsc > 0 {
		add("tsc", "PASS", fmt.Sprintf("%d kHz (passed to guests under TCG)", tsc), "")
	} else {
		add("tsc", "WARN", "TSC frequency unknown; some TCG boots may hang in calibration", "")
	}

	if agent, err := c.agentBinary(); err != nil {
		add("agent", "FAIL", err.Error(), HintOf(err))
	} else if err := env.CheckStatic(agent); err != nil {
		add("agent", "FAIL", err.Error(), HintOf(err))
	} else if c.cache.IsGuestBuild(agent) {
		add("agent", "PASS", "the guest build embedded in this pyro ("+agent+") is the guest's init", "")
	} else {
		add("agent", "PASS", agent+" is static and can be the guest's init", "")
	}

	if err := os.MkdirAll(c.cache.Dir, 0o755); err != nil {
		add("cache", "FAIL", err.Error(), "set PYRO_ENV_CACHE to a writable directory")
	} else {
		add("cache", "PASS", fmt.Sprintf("%s (%d environments installed)", c.cache.Dir, len(installed)), "")
	}
	switch ts := vm.Templates(c.cache.Dir); {
	case !templatesEnabled():
		add("templates", "PASS", "off (PYRO_TEMPLATES=0): every run boots its VM cold", "")
	case len(ts.Failures) > 0:
		add("templates", "WARN", "runs boot cold: a template could not be made: "+ts.Failures[0],
			"pyro needs QEMU with memory-backend-file and the x-ignore-shared migration capability, and free space in the cache; it tries again within the hour")
	default:
		add("templates", "PASS", fmt.Sprintf("%d made (%d MiB); the first run of an environment at each size makes one, later runs restore it", ts.Count, ts.Bytes>>20), "")
	}
	if err := env.CheckBuildHost(); err != nil {
		add("local-build", "WARN", err.Error(), HintOf(err))
	} else {
		add("local-build", "PASS", "debootstrap, dpkg-deb and mkfs.ext4 found; running as root", "")
	}

	r.Capabilities.VMBoot = qemuOK && r.Platform == "linux-x86_64"
	r.Capabilities.GuestExec = r.Capabilities.VMBoot
	r.Runtime = "PASS"
	for _, c := range r.Checks {
		if c.Status == "FAIL" {
			r.Runtime = "FAIL"
		}
	}
	if req.Environment != "" {
		if err := env.ValidateName(req.Environment); err != nil {
			return nil, err
		}
		s, err := env.Lookup(req.Environment)
		if err != nil {
			return nil, err
		}
		r.Environment = &EnvironmentState{Name: s.Name, State: c.envState(s)}
	}
	return r, nil
}
