package qemu

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-sandbox/pyro/internal/vmm"
)

func testSpec() vmm.Spec {
	return vmm.Spec{
		ID:            "abc123",
		Kernel:        "/cache/blobs/sha256/kernel",
		Initrd:        "/cache/boot/key.cpio",
		Cmdline:       []string{"pyro.root=/dev/vda", "pyro.upper=tmpfs"},
		VCPUs:         2,
		MemMiB:        1024,
		Disks:         []vmm.Disk{{Path: "/cache/blobs/sha256/rootfs", ReadOnly: true}},
		Accel:         vmm.TCG,
		TSCKHz:        2096046,
		LoopsPerJiffy: 8384184,
	}
}

// flagValues returns the values following each occurrence of flag.
func flagValues(args []string, flag string) []string {
	var v []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			v = append(v, args[i+1])
		}
	}
	return v
}

func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	v := flagValues(args, flag)
	if len(v) != 1 {
		t.Fatalf("%s appears %d times in %q, want once", flag, len(v), args)
	}
	return v[0]
}

func TestArgsAccelerators(t *testing.T) {
	for _, tc := range []struct {
		accel     vmm.Accelerator
		wantAccel string
		wantCPU   string
		tcgParams bool
	}{
		{vmm.KVM, "kvm", "host", false},
		{vmm.TCG, "tcg", "max", true},
	} {
		t.Run(string(tc.accel), func(t *testing.T) {
			spec := testSpec()
			spec.Accel = tc.accel
			args, err := Args(spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := flagValue(t, args, "-accel"); got != tc.wantAccel {
				t.Errorf("-accel %s, want %s", got, tc.wantAccel)
			}
			if got := flagValue(t, args, "-cpu"); got != tc.wantCPU {
				t.Errorf("-cpu %s, want %s", got, tc.wantCPU)
			}
			words := strings.Fields(flagValue(t, args, "-append"))
			for _, p := range []string{"tsc_early_khz=2096046", "lpj=8384184"} {
				if got := slices.Contains(words, p); got != tc.tcgParams {
					t.Errorf("kernel command line %q has %s: %v, want %v", words, p, got, tc.tcgParams)
				}
			}
			for _, w := range words {
				if !tc.tcgParams && (strings.HasPrefix(w, "lpj=") || strings.HasPrefix(w, "tsc_early_khz=")) {
					t.Errorf("kernel command line under %s has %s", tc.accel, w)
				}
			}
		})
	}
}

func TestArgsTCGWithoutTSC(t *testing.T) {
	spec := testSpec()
	spec.TSCKHz, spec.LoopsPerJiffy = 0, 0
	args, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmdline := flagValue(t, args, "-append")
	if strings.Contains(cmdline, "lpj=") || strings.Contains(cmdline, "tsc_early_khz=") {
		t.Errorf("kernel command line %q has calibration parameters without a TSC rate", cmdline)
	}
}

func TestArgsMachine(t *testing.T) {
	spec := testSpec()
	args, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := flagValue(t, args, "-m"); got != "1024" {
		t.Errorf("-m %s, want 1024", got)
	}
	if got := flagValue(t, args, "-smp"); got != "2" {
		t.Errorf("-smp %s, want 2", got)
	}
	if got := flagValue(t, args, "-kernel"); got != spec.Kernel {
		t.Errorf("-kernel %s, want %s", got, spec.Kernel)
	}
	if got := flagValue(t, args, "-initrd"); got != spec.Initrd {
		t.Errorf("-initrd %s, want %s", got, spec.Initrd)
	}
	if got := flagValue(t, args, "-name"); got != "pyro-abc123" {
		t.Errorf("-name %s, want pyro-abc123", got)
	}
	if got := flagValue(t, args, "-M"); !strings.HasPrefix(got, "microvm") {
		t.Errorf("-M %s, want microvm", got)
	}
	sandbox := flagValue(t, args, "-sandbox")
	opts := strings.Split(sandbox, ",")
	if opts[0] != "on" {
		t.Errorf("-sandbox %s does not start with on", sandbox)
	}
	for _, o := range []string{"spawn=deny", "elevateprivileges=deny", "obsolete=deny", "resourcecontrol=deny"} {
		if !slices.Contains(opts, o) {
			t.Errorf("-sandbox %s lacks %s", sandbox, o)
		}
	}
	for _, f := range []string{"-nodefaults", "-no-user-config", "-no-reboot"} {
		if !slices.Contains(args, f) {
			t.Errorf("args lack %s: %q", f, args)
		}
	}
	if got := flagValue(t, args, "-display"); got != "none" {
		t.Errorf("-display %s, want none", got)
	}
	// The agent and the console are the file descriptors pyro passes.
	chardevs := flagValues(args, "-chardev")
	for _, want := range []string{"socket,id=console,fd=4", "socket,id=agent,fd=3"} {
		if !slices.Contains(chardevs, want) {
			t.Errorf("-chardev values %q lack %q", chardevs, want)
		}
	}
	devices := flagValues(args, "-device")
	for _, want := range []string{"virtio-serial-device,max_ports=2", "virtserialport,chardev=agent,name=org.pyro.agent"} {
		if !slices.Contains(devices, want) {
			t.Errorf("-device values %q lack %q", devices, want)
		}
	}

	words := strings.Fields(flagValue(t, args, "-append"))
	for _, w := range append(append([]string(nil), baseCmdline...), spec.Cmdline...) {
		if !slices.Contains(words, w) {
			t.Errorf("kernel command line %q lacks %s", words, w)
		}
	}
	// The spec's parameters come after the backend's own, so they win
	// where the kernel takes the last value.
	if i, j := slices.Index(words, "rdinit=/init"), slices.Index(words, "pyro.root=/dev/vda"); i > j {
		t.Errorf("spec parameters come before the base ones: %q", words)
	}
}

func TestArgsDisks(t *testing.T) {
	spec := testSpec()
	spec.Disks = []vmm.Disk{
		{Path: "/cache/rootfs.ext4", ReadOnly: true},
		{Path: "/work/scratch.img"},
	}
	args, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	drives := flagValues(args, "-drive")
	if len(drives) != 2 {
		t.Fatalf("-drive values %q, want 2", drives)
	}
	for i, d := range drives {
		opts := strings.Split(d, ",")
		if !slices.Contains(opts, "file="+spec.Disks[i].Path) {
			t.Errorf("drive %d %q lacks its file", i, d)
		}
		if !slices.Contains(opts, "format=raw") {
			t.Errorf("drive %d %q is not format=raw (QEMU would probe the format of guest-written data)", i, d)
		}
		if got := slices.Contains(opts, "readonly=on"); got != spec.Disks[i].ReadOnly {
			t.Errorf("drive %d %q: readonly=on %v, want %v", i, d, got, spec.Disks[i].ReadOnly)
		}
	}
	devices := flagValues(args, "-device")
	for _, want := range []string{"virtio-blk-device,drive=disk0", "virtio-blk-device,drive=disk1"} {
		if !slices.Contains(devices, want) {
			t.Errorf("-device values %q lack %q", devices, want)
		}
	}
	// disk0 is /dev/vda: its device comes first.
	if slices.Index(args, "virtio-blk-device,drive=disk0") > slices.Index(args, "virtio-blk-device,drive=disk1") {
		t.Errorf("disks out of order: %q", args)
	}
}

func TestArgsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*vmm.Spec)
	}{
		{"no kernel", func(s *vmm.Spec) { s.Kernel = "" }},
		{"no initrd", func(s *vmm.Spec) { s.Initrd = "" }},
		{"no vcpus", func(s *vmm.Spec) { s.VCPUs = 0 }},
		{"negative vcpus", func(s *vmm.Spec) { s.VCPUs = -1 }},
		{"tiny memory", func(s *vmm.Spec) { s.MemMiB = 63 }},
		{"no memory", func(s *vmm.Spec) { s.MemMiB = 0 }},
		{"comma in kernel path", func(s *vmm.Spec) { s.Kernel = "/tmp/a,b/vmlinux" }},
		{"comma in initrd path", func(s *vmm.Spec) { s.Initrd = "/tmp/init,rd" }},
		{"comma in disk path", func(s *vmm.Spec) { s.Disks[0].Path = "/tmp/x,readonly=off" }},
		{"newline in disk path", func(s *vmm.Spec) { s.Disks[0].Path = "/tmp/x\ny" }},
		{"no accelerator", func(s *vmm.Spec) { s.Accel = "" }},
		{"unknown accelerator", func(s *vmm.Spec) { s.Accel = "hvf" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec()
			spec.Disks = slices.Clone(spec.Disks)
			tc.mutate(&spec)
			if args, err := Args(spec); err == nil {
				t.Errorf("Args = %q, want an error", args)
			}
		})
	}
}

func TestArgsSmallestMemory(t *testing.T) {
	spec := testSpec()
	spec.MemMiB = 64
	spec.VCPUs = 1
	if _, err := Args(spec); err != nil {
		t.Errorf("Args with 64 MiB and 1 vCPU: %v", err)
	}
}

func TestArgsDoesNotShareBaseCmdline(t *testing.T) {
	before := slices.Clone(baseCmdline)
	for range 3 {
		if _, err := Args(testSpec()); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(before, baseCmdline) {
		t.Errorf("Args changed baseCmdline: %q, was %q", baseCmdline, before)
	}
}

func TestArgsTemplateMemory(t *testing.T) {
	spec := testSpec()
	spec.Memory = &vmm.MemoryFile{Path: "/cache/boot/templates/k/memory", Shared: true}
	args, err := Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	if m := flagValue(t, args, "-M"); !strings.HasSuffix(m, ",memory-backend="+ramID) {
		t.Errorf("-M %q does not name the memory backend", m)
	}
	if o := flagValue(t, args, "-object"); o != "memory-backend-file,id=pyro-ram,size=1024M,mem-path=/cache/boot/templates/k/memory,share=on" {
		t.Errorf("-object %q", o)
	}
	if mon := flagValue(t, args, "-mon"); mon != "chardev=qmp,mode=control" {
		t.Errorf("-mon %q", mon)
	}
	if !slices.Contains(flagValues(args, "-chardev"), "socket,id=qmp,fd=5") {
		t.Errorf("no QMP chardev on fd 5: %q", args)
	}
	if slices.Contains(args, "-incoming") {
		t.Errorf("a template's machine boots, it does not restore: %q", args)
	}

	// A restored machine maps the file copy-on-write and waits for its
	// state over QMP.
	spec.Memory.Shared = false
	spec.Restore = os.Stdin
	args, err = Args(spec)
	if err != nil {
		t.Fatal(err)
	}
	if o := flagValue(t, args, "-object"); !strings.HasSuffix(o, ",share=off") {
		t.Errorf("-object %q, want share=off", o)
	}
	if in := flagValue(t, args, "-incoming"); in != "defer" {
		t.Errorf("-incoming %q", in)
	}
}

func TestArgsTemplateRefusals(t *testing.T) {
	for name, mutate := range map[string]func(*vmm.Spec){
		"restore without memory":  func(s *vmm.Spec) { s.Restore = os.Stdin },
		"restore into shared RAM": func(s *vmm.Spec) { s.Restore = os.Stdin; s.Memory = &vmm.MemoryFile{Path: "/m", Shared: true} },
		"memory path with comma":  func(s *vmm.Spec) { s.Memory = &vmm.MemoryFile{Path: "/a,share=on"} },
	} {
		spec := testSpec()
		mutate(&spec)
		if _, err := Args(spec); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTemplateKey(t *testing.T) {
	b := &Backend{Path: "/bin/sh"} // any file stands in for QEMU's binary
	key := func(mutate func(*vmm.Spec)) string {
		spec := testSpec()
		mutate(&spec)
		k, err := b.TemplateKey(spec)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key(func(*vmm.Spec) {})
	// What a restore does not depend on leaves the key alone.
	for name, mutate := range map[string]func(*vmm.Spec){
		"id":      func(s *vmm.Spec) { s.ID = "other" },
		"memory":  func(s *vmm.Spec) { s.Memory = &vmm.MemoryFile{Path: "/elsewhere"} },
		"restore": func(s *vmm.Spec) { s.Memory = &vmm.MemoryFile{Path: "/m"}; s.Restore = os.Stdin },
		"tsc":     func(s *vmm.Spec) { s.TSCKHz++; s.LoopsPerJiffy++ },
	} {
		if k := key(mutate); k != base {
			t.Errorf("%s changes the key", name)
		}
	}
	// What the machine is made of changes it.
	for name, mutate := range map[string]func(*vmm.Spec){
		"memory size": func(s *vmm.Spec) { s.MemMiB = 2048 },
		"vcpus":       func(s *vmm.Spec) { s.VCPUs = 1 },
		"kernel":      func(s *vmm.Spec) { s.Kernel = "/cache/blobs/sha256/other" },
		"initramfs":   func(s *vmm.Spec) { s.Initrd = "/cache/boot/other.cpio" },
		"disk":        func(s *vmm.Spec) { s.Disks[0].Path = "/cache/blobs/sha256/other" },
		"cmdline":     func(s *vmm.Spec) { s.Cmdline = append(s.Cmdline, "x=1") },
		"accelerator": func(s *vmm.Spec) { s.Accel = vmm.KVM },
	} {
		if k := key(mutate); k == base {
			t.Errorf("%s leaves the key unchanged", name)
		}
	}
	if _, err := (&Backend{Path: "/nonexistent/qemu"}).TemplateKey(testSpec()); err == nil {
		t.Errorf("a missing QEMU binary gives a key")
	}
}
