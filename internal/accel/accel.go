// Package accel decides whether guests run under KVM or TCG.
//
// A /dev/kvm that opens is not enough: under a nested hypervisor (such as
// PVM) a stock kernel boots tens of times slower than under QEMU's TCG. So
// KVM is chosen only when a probe — the real guest kernel booted with KVM
// to its init, which powers off at once — finishes within a deadline. The
// probe's verdict is cached per host boot, kernel and QEMU.
package accel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// ProbeDeadline bounds the KVM probe. Under hardware KVM the probe boot
// takes a few hundred milliseconds.
const ProbeDeadline = 5 * time.Second

// EnvOverride is the environment variable that forces an accelerator.
const EnvOverride = "PYRO_ACCEL"

// Probe is the outcome of booting the guest kernel under KVM.
type Probe struct {
	// Key identifies what was probed: host boot, kernel, QEMU.
	Key    string `json:"key"`
	OK     bool   `json:"ok"`
	Millis int64  `json:"ms"`
	Detail string `json:"detail,omitempty"`
}

// Decision is the chosen accelerator and why.
type Decision struct {
	Accel  vmm.Accelerator `json:"accelerator"`
	Reason string          `json:"reason"`
	// NeedProbe is set when KVM looks usable but has not been probed; the
	// caller probes and decides again.
	NeedProbe bool `json:"-"`
}

// Choose decides from the override ($PYRO_ACCEL, "" for none), the state
// of /dev/kvm and the probe (nil when not run yet).
func Choose(override string, kvm host.KVM, probe *Probe) (Decision, error) {
	switch override {
	case "":
	case string(vmm.TCG):
		return Decision{Accel: vmm.TCG, Reason: EnvOverride + "=tcg"}, nil
	case string(vmm.KVM):
		if !kvm.Usable() {
			return Decision{}, fmt.Errorf("%s=kvm, but KVM is not usable: %s", EnvOverride, kvmProblem(kvm))
		}
		return Decision{Accel: vmm.KVM, Reason: EnvOverride + "=kvm"}, nil
	default:
		return Decision{}, fmt.Errorf("%s=%q: want kvm or tcg", EnvOverride, override)
	}
	if !kvm.Usable() {
		return Decision{Accel: vmm.TCG, Reason: kvmProblem(kvm)}, nil
	}
	if probe == nil {
		return Decision{Accel: vmm.TCG, Reason: "KVM not probed yet", NeedProbe: true}, nil
	}
	if !probe.OK {
		reason := fmt.Sprintf("KVM is too slow here: a probe boot did not finish within %s", ProbeDeadline)
		if kvm.Nested != "" {
			reason += fmt.Sprintf(" (nested %s hypervisor)", kvm.Nested)
		}
		if probe.Detail != "" {
			reason += "; " + probe.Detail
		}
		return Decision{Accel: vmm.TCG, Reason: reason}, nil
	}
	return Decision{Accel: vmm.KVM, Reason: fmt.Sprintf("KVM probe boot took %d ms", probe.Millis)}, nil
}

func kvmProblem(k host.KVM) string {
	switch {
	case !k.Exists:
		return "/dev/kvm does not exist"
	case !k.Readable || !k.Writable:
		return "/dev/kvm is not readable and writable by this user"
	case k.Error != "":
		return k.Error
	}
	return "KVM_CREATE_VM failed"
}

// Store keeps probe results in a file.
type Store struct{ Path string }

// Load returns the cached probe for key, or nil.
func (s Store) Load(key string) *Probe {
	data, err := os.ReadFile(s.Path)
	if err != nil {
		return nil
	}
	var p Probe
	if json.Unmarshal(data, &p) != nil || p.Key != key {
		return nil
	}
	return &p
}

// Save records p.
func (s Store) Save(p Probe) error {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return err
	}
	data, _ := json.Marshal(p)
	return fsutil.WriteFileAtomic(s.Path, data, 0o644)
}
