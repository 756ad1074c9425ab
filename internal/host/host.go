// Package host gathers facts about the machine pyro runs on: the platform,
// /dev/kvm, the TSC frequency the guest kernel needs under TCG, and the
// programs pyro calls.
package host

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Platform is "linux-x86_64" and the like.
func Platform() string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	}
	return runtime.GOOS + "-" + arch
}

// KVM says what /dev/kvm offers.
type KVM struct {
	Exists   bool `json:"exists"`
	Readable bool `json:"readable"`
	Writable bool `json:"writable"`
	// CreateVM says KVM_CREATE_VM worked: the module answers, not just
	// the device node.
	CreateVM bool `json:"create_vm"`
	// Nested names a nested hypervisor pyro knows to be slow ("pvm"), if
	// its module is loaded.
	Nested string `json:"nested,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Usable says a VM can be created through /dev/kvm.
func (k KVM) Usable() bool { return k.Exists && k.Readable && k.Writable && k.CreateVM }

const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12
)

// ProbeKVM checks /dev/kvm without starting a guest.
func ProbeKVM() KVM {
	var k KVM
	if _, err := os.Stat("/dev/kvm"); err != nil {
		k.Error = "/dev/kvm does not exist"
		return k
	}
	k.Exists = true
	k.Readable = unix.Access("/dev/kvm", unix.R_OK) == nil
	k.Writable = unix.Access("/dev/kvm", unix.W_OK) == nil
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		k.Nested = "pvm"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		k.Error = err.Error()
		return k
	}
	defer f.Close()
	v, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if e != 0 || v != kvmAPIVersion {
		k.Error = "KVM_GET_API_VERSION failed or returned an unknown version"
		return k
	}
	fd, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if e != 0 {
		k.Error = "KVM_CREATE_VM failed: " + e.Error()
		return k
	}
	unix.Close(int(fd))
	k.CreateVM = true
	return k
}

var modelGHz = regexp.MustCompile(`@ ([0-9.]+)GHz`)

// TSCKHz estimates the TSC frequency in kHz from /proc/cpuinfo. Under TCG
// the guest's TSC runs at the host's rate, and telling the guest kernel
// the rate keeps it from calibrating, which hangs some TCG boots.
func TSCKHz() int64 {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return tscKHzFromCPUInfo(string(data))
}

func tscKHzFromCPUInfo(cpuinfo string) int64 {
	var mhz float64
	var flags, model string
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			if strings.TrimSpace(line) == "" && (mhz > 0 || model != "") {
				break // first processor only
			}
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "cpu MHz":
			mhz, _ = strconv.ParseFloat(v, 64)
		case "flags":
			flags = " " + v + " "
		case "model name":
			model = v
		}
	}
	// With a known TSC frequency (virtual machines, most modern CPUs),
	// "cpu MHz" is it; otherwise the nominal frequency in the model name
	// is the TSC's on Intel parts, and "cpu MHz" is the fallback.
	// Rounded, not truncated: 2096.046 MHz is 2096045.9999... in floating point.
	if strings.Contains(flags, " tsc_known_freq ") && mhz > 0 {
		return int64(math.Round(mhz * 1000))
	}
	if m := modelGHz.FindStringSubmatch(model); m != nil {
		if ghz, err := strconv.ParseFloat(m[1], 64); err == nil && ghz > 0 {
			return int64(math.Round(ghz * 1e6))
		}
	}
	return int64(math.Round(mhz * 1000))
}

// BootID identifies this boot of the host; facts cached under it are
// re-checked after a reboot.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Tool is a host program pyro runs.
type Tool struct {
	Name    string `json:"name"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
}

// FindTool looks name up in PATH and asks it for its version with
// versionArgs (first line of output).
func FindTool(name string, versionArgs ...string) (Tool, error) {
	t := Tool{Name: name}
	p, err := exec.LookPath(name)
	if err != nil {
		return t, errors.New(name + " not found in PATH")
	}
	t.Path = p
	if len(versionArgs) > 0 {
		out, _ := exec.Command(p, versionArgs...).Output()
		t.Version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	return t, nil
}
