package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// Child file descriptors of the channels pyro passes to QEMU (ExtraFiles
// start at 3). Passing connected sockets means no socket files to race on
// or clean up.
const (
	fdAgent   = 3
	fdConsole = 4
	// fdQMP is the QMP socket of a machine whose RAM is a file: one that
	// makes a template, or one restored from it.
	fdQMP = 5
	// fdState is the saved state a machine is restored from.
	fdState = 6
)

// ramID names the memory backend of a machine whose RAM is a file.
const ramID = "pyro-ram"

// baseCmdline is what every guest kernel gets. quiet keeps the slow
// emulated serial port out of the boot path; panic=-1 with -no-reboot turns
// a guest panic into a QEMU exit; pci=off skips probing a bus microvm does
// not have. init_on_alloc=0 stops the kernel zeroing each allocation it
// will fill anyway (Debian turns it on to keep stale kernel memory from
// leaking to users; in a guest whose only user is root, with nothing of
// the host's in its memory, it guards nothing): ~150 ms less per boot and
// first command under TCG.
var baseCmdline = []string{
	"console=ttyS0", "quiet", "loglevel=3", "panic=-1", "reboot=t", "pci=off",
	"8250.nr_uarts=1", "i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
	"init_on_alloc=0", "rdinit=/init",
}

// Args returns QEMU's argv (without the program) for spec.
func Args(spec vmm.Spec) ([]string, error) {
	if spec.Kernel == "" || spec.Initrd == "" {
		return nil, fmt.Errorf("a kernel and an initramfs are required")
	}
	if spec.VCPUs < 1 || spec.MemMiB < 64 {
		return nil, fmt.Errorf("invalid machine size: %d vCPUs, %d MiB", spec.VCPUs, spec.MemMiB)
	}
	paths := append([]string{spec.Kernel, spec.Initrd}, diskPaths(spec)...)
	if spec.Memory != nil {
		paths = append(paths, spec.Memory.Path)
		if spec.Memory.Shared && spec.Restore != nil {
			return nil, fmt.Errorf("a machine restored from a template cannot also make one")
		}
	} else if spec.Restore != nil {
		return nil, fmt.Errorf("restoring a machine needs the memory file of its template")
	}
	for _, s := range paths {
		// QEMU's option syntax uses ',' as a separator; a path holding one
		// would need escaping and is refused instead.
		if strings.ContainsAny(s, ",\n") {
			return nil, fmt.Errorf("path %q contains a comma or newline, which QEMU options cannot carry", s)
		}
	}
	cmdline := append([]string(nil), baseCmdline...)
	machine := "microvm,x-option-roms=off,rtc=on,isa-serial=on"
	if spec.Memory != nil {
		machine += ",memory-backend=" + ramID
	}
	args := []string{
		"-name", "pyro-" + spec.ID,
		"-M", machine,
		"-m", strconv.Itoa(spec.MemMiB),
		"-smp", strconv.Itoa(spec.VCPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	}
	switch spec.Accel {
	case vmm.KVM:
		args = append(args, "-accel", "kvm", "-cpu", "host")
	case vmm.TCG:
		args = append(args, "-accel", "tcg", "-cpu", "max")
		if spec.TSCKHz > 0 {
			cmdline = append(cmdline, "tsc_early_khz="+strconv.FormatInt(spec.TSCKHz, 10))
		}
		if spec.LoopsPerJiffy > 0 {
			cmdline = append(cmdline, "lpj="+strconv.FormatInt(spec.LoopsPerJiffy, 10))
		}
	default:
		return nil, fmt.Errorf("unknown accelerator %q", spec.Accel)
	}
	cmdline = append(cmdline, spec.Cmdline...)
	args = append(args,
		"-kernel", spec.Kernel,
		"-initrd", spec.Initrd,
		"-append", strings.Join(cmdline, " "),
		"-chardev", fmt.Sprintf("socket,id=console,fd=%d", fdConsole),
		"-serial", "chardev:console",
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d", fdAgent),
		"-device", "virtserialport,chardev=agent,name=org.pyro.agent",
	)
	if m := spec.Memory; m != nil {
		// The template's machine writes its RAM into the file; restored
		// machines map it copy-on-write. Both set the x-ignore-shared
		// migration capability over QMP (QEMU 7.2 has no option for it).
		share := "off"
		if m.Shared {
			share = "on"
		}
		args = append(args,
			"-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=%s", ramID, spec.MemMiB, m.Path, share),
			"-chardev", fmt.Sprintf("socket,id=qmp,fd=%d", fdQMP), "-mon", "chardev=qmp,mode=control",
		)
	}
	if spec.Restore != nil {
		// The state comes in over QMP, once the capability is set.
		args = append(args, "-incoming", "defer")
	}
	for i, d := range spec.Disks {
		drive := fmt.Sprintf("id=disk%d,file=%s,format=raw,if=none,discard=unmap", i, d.Path)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", fmt.Sprintf("virtio-blk-device,drive=disk%d", i))
	}
	return args, nil
}

func diskPaths(spec vmm.Spec) []string {
	var p []string
	for _, d := range spec.Disks {
		p = append(p, d.Path)
	}
	return p
}
